-- How each person wants to be told, and the chat webhooks of people and
-- teams (NULL: the defaults: e-mail, immediately; no chat webhook).
-- `notify_channels` is space-separated (email, chat) or `none`.
ALTER TABLE people ADD COLUMN notify_channels TEXT;
ALTER TABLE people ADD COLUMN digest_hour BIGINT;
ALTER TABLE people ADD COLUMN digest_time_zone TEXT;
ALTER TABLE people ADD COLUMN chat_kind TEXT;
ALTER TABLE people ADD COLUMN chat_url TEXT;
ALTER TABLE teams ADD COLUMN chat_kind TEXT;
ALTER TABLE teams ADD COLUMN chat_url TEXT;
CREATE INDEX team_members_by_email ON team_members (email);
