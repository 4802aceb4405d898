-- What this database's processes share with no one else: the prefix of the
-- RabbitMQ exchanges and queues they use when AUTHLEDGER_AMQP_PREFIX is not
-- set. Two databases on one broker under one prefix would share the mail
-- queue, and each worker would take mail meant for the other's users.
CREATE TABLE installation
(
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    amqp_prefix text    NOT NULL CHECK (amqp_prefix ~ '^[A-Za-z0-9_.-]{1,100}$')
);

-- A database that already holds events keeps the prefix it used before
-- (its queues may hold mail on its way); a new one gets a prefix of its own.
INSERT INTO installation (amqp_prefix)
SELECT CASE
           WHEN EXISTS (SELECT 1 FROM events) THEN 'authledger'
           ELSE 'authledger-' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 12)
       END;
