"""Push rules (spec "Push Notifications"): the predefined rules, a user's changes to them and
the merged ruleset served by GET /pushrules/. Evaluating rules against events comes later."""
