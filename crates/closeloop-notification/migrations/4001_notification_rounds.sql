-- A redriven notification starts a new round of attempts: its retry
-- schedule counts from the attempts made before the redrive.
ALTER TABLE notifications ADD COLUMN round_start BIGINT NOT NULL DEFAULT 0;
