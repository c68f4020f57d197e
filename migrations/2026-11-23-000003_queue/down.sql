DROP TABLE queue_tokens;
DROP TABLE queue_state;
