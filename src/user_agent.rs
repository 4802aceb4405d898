//! A user agent in words a person recognises: "Chrome on macOS", "curl",
//! "an unknown browser". The header is the client's own text, so whoever
//! sends it could make it read as ours in a mail or a page: only names
//! from the tables below come out, never a word of the header itself.

/// What a `User-Agent` header says the client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserAgent {
    browser: Option<&'static str>,
    system: Option<&'static str>,
    /// A program rather than a browser; named alone.
    tool: Option<&'static str>,
}

/// Programs by the product token they start with.
const TOOLS: &[(&str, &str)] = &[
    ("curl", "curl"),
    ("Wget", "Wget"),
    ("HTTPie", "HTTPie"),
    ("python-requests", "python-requests"),
    ("Go-http-client", "a Go HTTP client"),
    ("okhttp", "OkHttp"),
    ("PostmanRuntime", "Postman"),
];

/// Browsers by their product token, the first listed winning: each also
/// names the ones below it (Edge says Chrome and Safari, Chrome says
/// Safari), never one above.
const BROWSERS: &[(&str, &str)] = &[
    ("Edg", "Edge"),
    ("EdgA", "Edge"),
    ("EdgiOS", "Edge"),
    ("OPR", "Opera"),
    ("OPT", "Opera"),
    ("OPiOS", "Opera"),
    ("Opera", "Opera"),
    ("SamsungBrowser", "Samsung Internet"),
    ("Vivaldi", "Vivaldi"),
    ("YaBrowser", "Yandex Browser"),
    ("Firefox", "Firefox"),
    ("FxiOS", "Firefox"),
    ("CriOS", "Chrome"),
    ("Chromium", "Chromium"),
    // Chrome as a program drives it (this service's own browser tests).
    ("HeadlessChrome", "Chrome"),
    ("Chrome", "Chrome"),
    ("Safari", "Safari"),
];

/// Systems by a word of the platform comment, the first listed winning:
/// Android says Linux, iOS says Mac OS X.
const SYSTEMS: &[(&str, &str)] = &[
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPod", "iOS"),
    ("iPad", "iPadOS"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Macintosh", "macOS"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
    ("X11", "Linux"),
    ("FreeBSD", "FreeBSD"),
];

impl UserAgent {
    /// Reads the header as `product/version (comment) product/version …`.
    pub fn parse(header: &str) -> Self {
        let (products, comments) = split(header);
        let tool = products.first().and_then(|first| {
            TOOLS
                .iter()
                .find(|(token, _)| first == token)
                .map(|(_, name)| *name)
        });
        if tool.is_some() {
            return Self {
                browser: None,
                system: None,
                tool,
            };
        }
        let browser = BROWSERS
            .iter()
            .find(|(token, _)| products.contains(token))
            .map(|(_, name)| *name)
            .or_else(|| {
                // Internet Explorer names itself only inside the comment.
                comments
                    .iter()
                    .any(|c| c.contains("MSIE ") || c.contains("Trident/"))
                    .then_some("Internet Explorer")
            });
        // The first comment is the platform's; later ones are the engine's
        // ("KHTML, like Gecko").
        let system = comments.first().and_then(|platform| {
            SYSTEMS
                .iter()
                .find(|(token, _)| platform.contains(token))
                .map(|(_, name)| *name)
        });
        Self {
            browser,
            system,
            tool: None,
        }
    }

    /// As a sentence shows it: "Chrome on macOS", "curl", "an unknown
    /// browser on Linux", "an unknown browser".
    pub fn phrase(&self) -> String {
        if let Some(tool) = self.tool {
            return tool.to_owned();
        }
        match (self.browser, self.system) {
            (Some(browser), Some(system)) => format!("{browser} on {system}"),
            (Some(browser), None) => browser.to_owned(),
            (None, Some(system)) => format!("an unknown browser on {system}"),
            (None, None) => "an unknown browser".to_owned(),
        }
    }

    /// As a label or a cell shows it: "An unknown browser", but "curl"
    /// keeps the case of its name.
    pub fn label(&self) -> String {
        let phrase = self.phrase();
        match phrase.strip_prefix('a') {
            Some(rest) if rest.starts_with(' ') || rest.starts_with("n ") => format!("A{rest}"),
            _ => phrase,
        }
    }
}

/// The product names (`Chrome` of `Chrome/126.0`) outside parentheses, in
/// order, and the comments inside them.
fn split(header: &str) -> (Vec<&str>, Vec<&str>) {
    let mut products = Vec::new();
    let mut comments = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in header.char_indices() {
        match c {
            '(' => {
                if depth == 0 {
                    products.extend(names(&header[start..i]));
                    start = i + 1;
                }
                depth += 1;
            }
            ')' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    comments.push(&header[start..i]);
                    start = i + 1;
                }
            }
            _ => {}
        }
    }
    if depth == 0 {
        products.extend(names(&header[start..]));
    }
    (products, comments)
}

fn names(text: &str) -> impl Iterator<Item = &str> {
    text.split_whitespace()
        .filter_map(|token| token.split_once('/').map(|(name, _)| name))
}

#[cfg(test)]
mod tests {
    use super::UserAgent;

    fn phrase(header: &str) -> String {
        UserAgent::parse(header).phrase()
    }

    #[test]
    fn chrome_on_macos() {
        assert_eq!(
            phrase("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"),
            "Chrome on macOS"
        );
    }

    #[test]
    fn edge_on_windows_though_it_also_says_chrome_and_safari() {
        assert_eq!(
            phrase("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0"),
            "Edge on Windows"
        );
    }

    #[test]
    fn firefox_on_linux_and_on_windows() {
        assert_eq!(
            phrase("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
            "Firefox on Linux"
        );
        assert_eq!(
            phrase(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
            ),
            "Firefox on Windows"
        );
    }

    #[test]
    fn safari_on_macos() {
        assert_eq!(
            phrase("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"),
            "Safari on macOS"
        );
    }

    #[test]
    fn opera_on_windows_though_it_also_says_chrome() {
        assert_eq!(
            phrase("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0"),
            "Opera on Windows"
        );
    }

    #[test]
    fn mobile_safari_on_an_iphone_and_an_ipad() {
        assert_eq!(
            phrase("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"),
            "Safari on iOS"
        );
        assert_eq!(
            phrase("Mozilla/5.0 (iPad; CPU OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1"),
            "Safari on iPadOS"
        );
    }

    #[test]
    fn chrome_on_an_iphone_calls_itself_crios() {
        assert_eq!(
            phrase("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1"),
            "Chrome on iOS"
        );
    }

    #[test]
    fn chrome_on_android_though_android_says_linux() {
        assert_eq!(
            phrase("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36"),
            "Chrome on Android"
        );
    }

    #[test]
    fn headless_chrome_and_chromeos_read_as_chrome() {
        assert_eq!(
            phrase("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36"),
            "Chrome on Linux"
        );
        assert_eq!(
            phrase("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"),
            "Chrome on ChromeOS"
        );
    }

    #[test]
    fn a_tool_is_named_alone() {
        assert_eq!(phrase("curl/8.5.0"), "curl");
        assert_eq!(phrase("python-requests/2.31.0"), "python-requests");
        assert_eq!(phrase("Go-http-client/1.1"), "a Go HTTP client");
    }

    #[test]
    fn what_cannot_be_told_is_an_unknown_browser() {
        for header in [
            "",
            "journey-test/1.0",
            "<script>alert(1)</script>",
            "(((",
            ")",
        ] {
            assert_eq!(phrase(header), "an unknown browser", "{header:?}");
        }
        assert_eq!(
            phrase("Mozilla/5.0 (X11; Linux x86_64)"),
            "an unknown browser on Linux"
        );
    }

    #[test]
    fn a_label_is_capitalised_and_a_name_keeps_its_case() {
        assert_eq!(UserAgent::parse("").label(), "An unknown browser");
        assert_eq!(UserAgent::parse("curl/8.5.0").label(), "curl");
        assert_eq!(
            UserAgent::parse("Go-http-client/1.1").label(),
            "A Go HTTP client"
        );
        assert_eq!(
            UserAgent::parse("Mozilla/5.0 (Windows NT 10.0) Gecko/20100101 Firefox/128.0").label(),
            "Firefox on Windows"
        );
    }

    #[test]
    fn a_header_cannot_put_its_own_words_into_the_description() {
        for hostile in [
            "Mozilla/5.0 <b>to cancel open https://evil.example/x?y=1</b>",
            "Chrome/120.0.6099.71 (x86_64) see evil.example/reset or www.evil.com.",
            "curl/8.5.0 call +1 555 0100 to keep your account",
            "Mozilla/5.0 (Windows; evil.example/reset) Firefox/1",
            &"a".repeat(500),
        ] {
            let shown = phrase(hostile);
            assert!(
                !shown.contains("evil")
                    && !shown.contains('<')
                    && !shown.contains("call")
                    && !shown.contains("aaaa"),
                "{shown}"
            );
        }
    }
}
