-- A booking's common case in one round trip. `insert_booking` calls this
-- after locking the member: it locks the resources in id order (the one lock
-- order), and when no booking of this request exists yet, every resource
-- exists and is active, nothing active holds the period and no maintenance
-- block covers it, it writes the reservations with their calendar outbox and
-- audit rows, announces them (`p_announce`, the NOTIFY payload the daemon
-- built) and answers 'booked'. Otherwise it writes nothing and answers why
-- ('retry', 'missing', 'inactive', 'taken', 'blocked'); the daemon then takes
-- its statement-by-statement path in the same transaction, which says so in
-- detail (who holds it, which block) and handles the released-this-minute case.
-- The exclusion constraint still guards every row it writes.
CREATE FUNCTION gpures_book(
    p_user bigint,
    p_unix_user text,
    p_request uuid,
    p_booking uuid,
    p_ids uuid[],
    p_resources bigint[],
    p_start timestamptz,
    p_end timestamptz,
    p_note text,
    p_series uuid,
    p_pending_until timestamptz,
    p_pending_reason text,
    p_announce text
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_period tstzrange := tstzrange(p_start, p_end, '[)');
    v_found int;
    v_active int;
BEGIN
    IF EXISTS (SELECT 1 FROM reservations WHERE user_id = p_user AND request_id = p_request) THEN
        RETURN 'retry';
    END IF;
    PERFORM 1 FROM resources WHERE id = ANY(p_resources) ORDER BY id FOR NO KEY UPDATE;
    SELECT count(*), count(*) FILTER (WHERE active) INTO v_found, v_active
      FROM resources WHERE id = ANY(p_resources);
    IF v_found <> cardinality(p_resources) THEN
        RETURN 'missing';
    END IF;
    IF v_active <> v_found THEN
        RETURN 'inactive';
    END IF;
    IF EXISTS (SELECT 1 FROM reservations
                WHERE status = 'active' AND resource_id = ANY(p_resources) AND period && v_period) THEN
        RETURN 'taken';
    END IF;
    IF EXISTS (SELECT 1 FROM blocks
                WHERE removed_at IS NULL AND resource_id = ANY(p_resources) AND period && v_period) THEN
        RETURN 'blocked';
    END IF;
    INSERT INTO reservations (id, booking_id, request_id, user_id, resource_id, period, note,
                              series_id, pending_until, pending_reason)
    SELECT t.id, p_booking, p_request, p_user, t.resource_id, v_period, p_note,
           p_series, p_pending_until, p_pending_reason
      FROM unnest(p_ids, p_resources) AS t(id, resource_id);
    INSERT INTO calendar_outbox (reservation_id, operation)
    SELECT id, 'upsert' FROM unnest(p_ids) AS t(id);
    INSERT INTO audit_log (actor_id, actor_unix_user, action, reservation_id, resource_id, detail)
    SELECT p_user, p_unix_user, 'reservation.create', t.id, t.resource_id, '{}'::jsonb
      FROM unnest(p_ids, p_resources) AS t(id, resource_id);
    PERFORM pg_notify('gpures_changes', p_announce);
    RETURN 'booked';
END;
$$;
