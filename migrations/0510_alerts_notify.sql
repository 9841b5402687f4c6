-- The andon on the live feed (ADR 0048): every change of an `alerts` row is announced with
-- `pg_notify('shopfloor_alerts', alert_id)` by triggers, in the transaction that writes the
-- row. PostgreSQL delivers a notification only when its transaction commits, so a listener
-- that reads the row on a notification always reads the committed change; whoever writes the
-- table (the evaluator, a replay, a repair by hand) is announced without knowing of it.
--
-- Statement-level triggers with transition tables: one call per statement, however many rows
-- it writes (the evaluator's set-based writes stay one statement), and one notification per
-- row (PostgreSQL folds identical notifications of one transaction into one). An update that
-- changes nothing (a re-read event, the raise's `ON CONFLICT` refresh of an unchanged
-- `raised_recorded`) announces nothing.

CREATE FUNCTION alerts_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('shopfloor_alerts', n.alert_id) FROM inserted n;
    RETURN NULL;
END
$$;

CREATE FUNCTION alerts_notify_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('shopfloor_alerts', n.alert_id)
    FROM updated n JOIN previous o USING (alert_id)
    WHERE o IS DISTINCT FROM n;
    RETURN NULL;
END
$$;

CREATE TRIGGER alerts_notify_insert AFTER INSERT ON alerts
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION alerts_notify_inserted();

CREATE TRIGGER alerts_notify_update AFTER UPDATE ON alerts
    REFERENCING OLD TABLE AS previous NEW TABLE AS updated
    FOR EACH STATEMENT EXECUTE FUNCTION alerts_notify_updated();
