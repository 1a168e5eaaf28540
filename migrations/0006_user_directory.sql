-- User directory search (POST /user_directory/search) looks for users in rooms anyone may see:
-- rooms with a public join rule or world-readable history. These partial indexes find those
-- rooms' current join-rule and history-visibility events without scanning all current state.
CREATE INDEX current_state_join_rules ON current_state (room_id)
    WHERE type = 'm.room.join_rules';
CREATE INDEX current_state_history_visibility ON current_state (room_id)
    WHERE type = 'm.room.history_visibility';
