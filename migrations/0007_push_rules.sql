-- A user's changes to their push rules (homeserver/push/rules.py): overrides of the predefined
-- rules' enabled/actions and the user's own rules in priority order, as one JSON object. The
-- merged ruleset clients see is derived from it and also written to `m.push_rules` account data.
CREATE TABLE push_rule_changes (
    user_id TEXT PRIMARY KEY REFERENCES users(user_id) ON DELETE CASCADE,
    changes TEXT NOT NULL
);
