-- The workflow's closure rules: 1 when closing needs an opportunity.
ALTER TABLE tickets ADD COLUMN require_opportunity BIGINT NOT NULL DEFAULT 0;
