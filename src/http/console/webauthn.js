// The console's one script: the WebAuthn ceremonies. A form marked
// data-webauthn="get" (sign in) or "create" (register) carries the
// server's options in data-options; on submit the browser asks the
// security key or passkey, puts its answer in the form's hidden
// "credential" field, and sends the form as usual.
"use strict";

(function () {
  function toBytes(base64url) {
    const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  }

  function toBase64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (const byte of bytes) text += String.fromCharCode(byte);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // Browsers without the JSON helpers of WebAuthn Level 3.
  function withBytes(options) {
    const copy = Object.assign({}, options, { challenge: toBytes(options.challenge) });
    if (copy.user) copy.user = Object.assign({}, copy.user, { id: toBytes(copy.user.id) });
    for (const list of ["allowCredentials", "excludeCredentials"]) {
      if (copy[list]) {
        copy[list] = copy[list].map((c) => Object.assign({}, c, { id: toBytes(c.id) }));
      }
    }
    return copy;
  }

  function requestOptions(options) {
    return PublicKeyCredential.parseRequestOptionsFromJSON
      ? PublicKeyCredential.parseRequestOptionsFromJSON(options)
      : withBytes(options);
  }

  function creationOptions(options) {
    return PublicKeyCredential.parseCreationOptionsFromJSON
      ? PublicKeyCredential.parseCreationOptionsFromJSON(options)
      : withBytes(options);
  }

  function asJSON(credential) {
    if (typeof credential.toJSON === "function") return credential.toJSON();
    const response = credential.response;
    const json = {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      extensions: credential.getClientExtensionResults(),
      response: { clientDataJSON: toBase64url(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      json.response.attestationObject = toBase64url(response.attestationObject);
      if (response.getTransports) json.response.transports = response.getTransports();
    } else {
      json.response.authenticatorData = toBase64url(response.authenticatorData);
      json.response.signature = toBase64url(response.signature);
      if (response.userHandle) json.response.userHandle = toBase64url(response.userHandle);
    }
    return json;
  }

  function say(form, message) {
    const status = form.querySelector("[data-webauthn-status]");
    if (status) status.textContent = message;
  }

  for (const form of document.querySelectorAll("form[data-webauthn]")) {
    if (!window.PublicKeyCredential) {
      say(form, "This browser cannot use security keys or passkeys. Use another method.");
      continue;
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!form.reportValidity()) return;
      const options = JSON.parse(form.dataset.options).publicKey;
      say(form, "Follow your browser's prompt to use your security key or passkey.");
      try {
        const credential =
          form.dataset.webauthn === "create"
            ? await navigator.credentials.create({ publicKey: creationOptions(options) })
            : await navigator.credentials.get({ publicKey: requestOptions(options) });
        form.elements.credential.value = JSON.stringify(asJSON(credential));
        form.submit();
      } catch (error) {
        say(form, "Your security key or passkey did not answer (" + error.name + "). Try again, or use another method.");
      }
    });
  }
})();
