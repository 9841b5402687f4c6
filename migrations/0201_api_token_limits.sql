-- A token may carry its own rate limit (ADR 0033), set when it is issued: requests per
-- second sustained and the burst. NULL: the process's default
-- (SHOPFLOOR_RATE_PER_TOKEN, SHOPFLOOR_RATE_BURST_PER_TOKEN).
ALTER TABLE api_tokens
    ADD COLUMN rate_per_s integer CHECK (rate_per_s > 0),
    ADD COLUMN rate_burst integer CHECK (rate_burst > 0);
