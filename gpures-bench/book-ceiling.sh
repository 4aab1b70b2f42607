#!/usr/bin/env bash
# The ceiling on booking throughput, measured with pgbench on gpures' own
# schema, with no gpures client or daemon in the way: 8 clients, 5 s each,
# three rounds interleaved, on a durable cluster (fsync on), of
#   bare      a one-row INSERT into reservations (issue #19's baseline);
#   notify    the same INSERT and its NOTIFY in one statement: what any
#             change that announces itself as it commits costs;
#   booking   the whole common-case booking as one statement: the member's
#             row locked, then gpures_book (migration 15: the resource
#             locked, the request, period and blocks checked, reservation,
#             outbox and audit rows written, NOTIFY).
# PostgreSQL holds one lock from a notifying transaction's pre-commit
# through its WAL flush, so notifying commits never share a flush; the bare
# INSERTs do.
#
# Usage, as root from the repository root after `cargo build --release`:
#   bash gpures-bench/book-ceiling.sh
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
daemon=./target/release/gpures-daemon
[ -x "$daemon" ] || { echo "build first: cargo build --release" >&2; exit 1; }
dir=$(mktemp -d /tmp/gpures-book-ceiling.XXXXXX)
chmod 755 "$dir"
"$daemon" --state-dir "$dir" migrate >/dev/null
owner=$(stat -c %U "$dir/pg/data")
run="$dir/pg/run"
runuser -u "$owner" -- "$bin/pg_ctl" -D "$dir/pg/data" -w \
  -o "-k $run -c listen_addresses=''" -l "$dir/pg/ceiling.log" start >/dev/null
stop() {
  runuser -u "$owner" -- "$bin/pg_ctl" -D "$dir/pg/data" -m fast stop >/dev/null || true
  rm -rf "$dir"
}
trap stop EXIT

psql -q -X -v ON_ERROR_STOP=1 -h "$run" -U gpures -d gpures <<'SQL'
INSERT INTO users (email, display_name, password_hash, unix_user)
SELECT 'u' || i || '@ceiling.kr', 'U' || i, 'x', 'u' || i FROM generate_series(1, 8) i;
INSERT INTO resources (name, kind, gpu_index)
SELECT 'ceiling' || i, 'gpu', i FROM generate_series(1, 8) i;
-- One minute per transaction, never overlapping on a resource.
CREATE SEQUENCE ceiling_slot;
CREATE FUNCTION ceiling_book(p_user bigint, p_resource bigint, p_start timestamptz)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM users WHERE id = p_user FOR NO KEY UPDATE;
    RETURN gpures_book(p_user, 'u', gen_random_uuid(), gen_random_uuid(),
                       ARRAY[gen_random_uuid()], ARRAY[p_resource], p_start,
                       p_start + interval '1 minute', '', NULL, NULL, NULL, 'r:ceiling');
END $$;
SQL

slot="timestamptz '2030-01-01' + make_interval(mins => nextval('ceiling_slot')::int)"
cat >"$dir/bare.sql" <<SQL
WITH s AS (SELECT $slot AS at)
INSERT INTO reservations (id, booking_id, user_id, resource_id, period)
SELECT gen_random_uuid(), gen_random_uuid(), (SELECT id FROM users ORDER BY id LIMIT 1 OFFSET :client_id),
       (SELECT id FROM resources ORDER BY id LIMIT 1 OFFSET :client_id), tstzrange(at, at + interval '1 minute') FROM s;
SQL
cat >"$dir/notify.sql" <<SQL
WITH s AS (SELECT $slot AS at),
     made AS (INSERT INTO reservations (id, booking_id, user_id, resource_id, period)
              SELECT gen_random_uuid(), gen_random_uuid(), (SELECT id FROM users ORDER BY id LIMIT 1 OFFSET :client_id),
                     (SELECT id FROM resources ORDER BY id LIMIT 1 OFFSET :client_id), tstzrange(at, at + interval '1 minute') FROM s
              RETURNING id)
SELECT pg_notify('gpures_ceiling', id::text) FROM made;
SQL
cat >"$dir/booking.sql" <<SQL
SELECT ceiling_book((SELECT id FROM users ORDER BY id LIMIT 1 OFFSET :client_id),
                    (SELECT id FROM resources ORDER BY id LIMIT 1 OFFSET :client_id), $slot);
SQL

declare -A sum=([bare]=0 [notify]=0 [booking]=0)
for round in 1 2 3; do
  line="round $round:"
  for script in bare notify booking; do
    tps=$("$bin/pgbench" -h "$run" -U gpures -n -c 8 -j 2 -T 5 -f "$dir/$script.sql" gpures 2>&1 |
      sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    [ -n "$tps" ] || { echo "pgbench $script failed" >&2; exit 1; }
    sum[$script]=$(awk -v a="${sum[$script]}" -v b="$tps" 'BEGIN { print a + b }')
    line="$line $script $(printf '%.0f' "$tps")/s"
  done
  echo "$line"
done
awk -v b="${sum[bare]}" -v n="${sum[notify]}" -v k="${sum[booking]}" 'BEGIN {
  printf "notify / bare:    %.2f\nbooking / bare:   %.2f\nbooking / notify: %.2f\n", n / b, k / b, k / n }'
