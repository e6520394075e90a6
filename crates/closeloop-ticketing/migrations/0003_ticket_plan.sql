-- What the workflow planned for a ticket (see closeloop.v1.TicketOpened):
-- stakeholders (JSON array of e-mails), the resolution guide (JSON object),
-- SLA clocks in seconds, the fallback flag and the programs version.
ALTER TABLE tickets ADD COLUMN stakeholders TEXT NOT NULL DEFAULT '[]';
ALTER TABLE tickets ADD COLUMN guide TEXT;
ALTER TABLE tickets ADD COLUMN first_contact_secs BIGINT NOT NULL DEFAULT 172800;
ALTER TABLE tickets ADD COLUMN escalate_after_secs BIGINT NOT NULL DEFAULT 604800;
ALTER TABLE tickets ADD COLUMN close_within_secs BIGINT NOT NULL DEFAULT 2592000;
ALTER TABLE tickets ADD COLUMN owner_fallback_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE tickets ADD COLUMN config_version TEXT NOT NULL DEFAULT '';
ALTER TABLE tickets ADD COLUMN feedback_revision BIGINT NOT NULL DEFAULT 0;

CREATE INDEX tickets_by_feedback ON tickets (feedback_id, workflow_id);
