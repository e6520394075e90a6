-- Why a ticket waits on the customer (empty: it does not).
ALTER TABLE tickets ADD COLUMN waiting_reason TEXT NOT NULL DEFAULT '';

-- Each ticket's SLA events (written by the escalation role), as the ticket
-- view shows them: GetTicket folds them with the domain's evolve. The
-- payload is the stored protobuf, base64.
CREATE TABLE ticket_sla_events (
    ticket_id TEXT NOT NULL,
    sequence  BIGINT NOT NULL,
    payload   TEXT NOT NULL,
    PRIMARY KEY (ticket_id, sequence)
);
