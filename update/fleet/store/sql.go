package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/pqbranch/pqbranch/update/fleet/report"
	"github.com/pqbranch/pqbranch/update/rollout"
)

// dialect is what differs between SQLite and PostgreSQL.
type dialect struct {
	name     string
	blob     string // column type for bytes
	serial   string // auto-increment primary key column
	dollar   bool   // placeholders are $1, $2 rather than ?
	lockStmt string // run first in UpdateRollout's transaction; "" when BEGIN already serializes
}

// sqlStore is the Store over database/sql. Times are stored as Unix
// nanoseconds (BIGINT) so both databases compare them the same way.
type sqlStore struct {
	db *sql.DB
	d  dialect
}

func (s *sqlStore) q(query string) string {
	if !s.d.dollar {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (s *sqlStore) migrate(ctx context.Context) error {
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS devices (id TEXT PRIMARY KEY, board TEXT NOT NULL, grp TEXT NOT NULL,
			pubkey ` + s.d.blob + ` NOT NULL, last_seq BIGINT NOT NULL DEFAULT 0)`,
		`CREATE INDEX IF NOT EXISTS devices_board ON devices (board)`,
		`CREATE TABLE IF NOT EXISTS reports (device TEXT NOT NULL, seq BIGINT NOT NULL, version TEXT NOT NULL,
			outcome TEXT NOT NULL, reason TEXT NOT NULL, received BIGINT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (device, seq))`,
		`CREATE TABLE IF NOT EXISTS outcomes (version TEXT NOT NULL, device TEXT NOT NULL, outcome TEXT NOT NULL,
			seq BIGINT NOT NULL, PRIMARY KEY (version, device))`,
		`CREATE TABLE IF NOT EXISTS rollouts (version TEXT PRIMARY KEY, state TEXT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS events (id ` + s.d.serial + `, version TEXT NOT NULL, at BIGINT NOT NULL,
			state TEXT NOT NULL, note TEXT NOT NULL)`,
	}
	for _, st := range stmts {
		if _, err := s.db.ExecContext(ctx, st); err != nil {
			return fmt.Errorf("store (%s): creating schema: %w", s.d.name, err)
		}
	}
	return nil
}

func (s *sqlStore) Close() error { return s.db.Close() }

// enrollBatch bounds the rows of one INSERT (PostgreSQL allows 65535
// parameters).
const enrollBatch = 500

func (s *sqlStore) Enroll(ctx context.Context, devs ...Device) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for len(devs) > 0 {
			n := min(len(devs), enrollBatch)
			var b strings.Builder
			b.WriteString("INSERT INTO devices (id, board, grp, pubkey) VALUES ")
			args := make([]any, 0, 4*n)
			for i, d := range devs[:n] {
				if d.ID == "" || len(d.Key) != 32 {
					return fmt.Errorf("store: enrolling device %q: expected an id and a 32-byte Ed25519 key", d.ID)
				}
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString("(?, ?, ?, ?)")
				args = append(args, d.ID, d.Board, d.Group, []byte(d.Key))
			}
			b.WriteString(" ON CONFLICT (id) DO UPDATE SET board = excluded.board, grp = excluded.grp, pubkey = excluded.pubkey")
			if _, err := tx.ExecContext(ctx, s.q(b.String()), args...); err != nil {
				return fmt.Errorf("store: enrolling devices: %w", err)
			}
			devs = devs[n:]
		}
		return nil
	})
}

func (s *sqlStore) Device(ctx context.Context, id string) (Device, error) {
	d := Device{ID: id}
	var key []byte
	err := s.db.QueryRowContext(ctx, s.q(`SELECT board, grp, pubkey FROM devices WHERE id = ?`), id).Scan(&d.Board, &d.Group, &key)
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("device %s: %w", id, ErrUnknownDevice)
	}
	d.Key = key
	return d, err
}

func (s *sqlStore) Devices(ctx context.Context, board string) ([]Device, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, board, grp, pubkey FROM devices WHERE ? = '' OR board = ? ORDER BY id`), board, board)
	if err != nil {
		return nil, fmt.Errorf("store: listing devices: %w", err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		var d Device
		var key []byte
		if err := rows.Scan(&d.ID, &d.Board, &d.Group, &key); err != nil {
			return nil, err
		}
		d.Key = key
		out = append(out, d)
	}
	return out, rows.Err()
}

func (s *sqlStore) AddReport(ctx context.Context, r report.Report, raw []byte, received time.Time) error {
	if r.Seq > math.MaxInt64 {
		return fmt.Errorf("report from %s: field \"seq\": %d does not fit the store", r.Device, r.Seq)
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		// The conditional UPDATE both claims the sequence number and, in
		// PostgreSQL, locks the device's row: two endpoints receiving the
		// same report cannot both store it.
		res, err := tx.ExecContext(ctx, s.q(`UPDATE devices SET last_seq = ? WHERE id = ? AND last_seq < ?`), int64(r.Seq), r.Device, int64(r.Seq))
		if err != nil {
			return fmt.Errorf("store: report from %s: %w", r.Device, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var last int64
			err := tx.QueryRowContext(ctx, s.q(`SELECT last_seq FROM devices WHERE id = ?`), r.Device).Scan(&last)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("report from %s: %w", r.Device, ErrUnknownDevice)
			}
			if err != nil {
				return err
			}
			return fmt.Errorf("report from %s: seq %d, last accepted %d: %w", r.Device, r.Seq, last, ErrReplay)
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO reports (device, seq, version, outcome, reason, received, body) VALUES (?, ?, ?, ?, ?, ?, ?)`),
			r.Device, int64(r.Seq), r.To, r.Outcome.String(), r.Reason, received.UnixNano(), string(raw)); err != nil {
			return fmt.Errorf("store: report from %s: %w", r.Device, err)
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO outcomes (version, device, outcome, seq) VALUES (?, ?, ?, ?)
			ON CONFLICT (version, device) DO UPDATE SET outcome = excluded.outcome, seq = excluded.seq`),
			r.To, r.Device, r.Outcome.String(), int64(r.Seq)); err != nil {
			return fmt.Errorf("store: report from %s: %w", r.Device, err)
		}
		return nil
	})
}

func (s *sqlStore) Outcomes(ctx context.Context, version string) (map[string]report.Outcome, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT device, outcome FROM outcomes WHERE version = ?`), version)
	if err != nil {
		return nil, fmt.Errorf("store: outcomes of %s: %w", version, err)
	}
	defer rows.Close()
	out := map[string]report.Outcome{}
	for rows.Next() {
		var dev, o string
		if err := rows.Scan(&dev, &o); err != nil {
			return nil, err
		}
		var oc report.Outcome
		if err := oc.UnmarshalText([]byte(o)); err != nil {
			return nil, fmt.Errorf("store: outcome of %s for %s: %w", dev, version, err)
		}
		out[dev] = oc
	}
	return out, rows.Err()
}

func (s *sqlStore) ReportCount(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM reports`).Scan(&n)
	return n, err
}

func (s *sqlStore) Rollout(ctx context.Context, version string) (rollout.State, bool, error) {
	var raw string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT state FROM rollouts WHERE version = ?`), version).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return rollout.State{}, false, nil
	}
	if err != nil {
		return rollout.State{}, false, fmt.Errorf("store: rollout of %s: %w", version, err)
	}
	st, err := decodeState(version, raw)
	return st, err == nil, err
}

func (s *sqlStore) Rollouts(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT version FROM rollouts ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("store: listing rollouts: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func decodeState(version, raw string) (rollout.State, error) {
	var st rollout.State
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return st, fmt.Errorf("store: rollout state of %s: %w", version, err)
	}
	return st, nil
}

func (s *sqlStore) UpdateRollout(ctx context.Context, version string, at time.Time, fn func(rollout.State) (rollout.State, string, error)) (rollout.State, error) {
	var next rollout.State
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if s.d.lockStmt != "" {
			if _, err := tx.ExecContext(ctx, s.d.lockStmt); err != nil {
				return fmt.Errorf("store: rollout lock: %w", err)
			}
		}
		var cur rollout.State
		var raw string
		err := tx.QueryRowContext(ctx, s.q(`SELECT state FROM rollouts WHERE version = ?`), version).Scan(&raw)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("store: rollout of %s: %w", version, err)
		default:
			if cur, err = decodeState(version, raw); err != nil {
				return err
			}
		}
		n, note, err := fn(cur)
		if err != nil {
			return err
		}
		next = n
		if n == cur && note == "" {
			return nil
		}
		b, _ := json.Marshal(n)
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO rollouts (version, state) VALUES (?, ?)
			ON CONFLICT (version) DO UPDATE SET state = excluded.state`), version, string(b)); err != nil {
			return fmt.Errorf("store: rollout of %s: %w", version, err)
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO events (version, at, state, note) VALUES (?, ?, ?, ?)`),
			version, at.UnixNano(), string(b), note); err != nil {
			return fmt.Errorf("store: rollout event of %s: %w", version, err)
		}
		return nil
	})
	return next, err
}

func (s *sqlStore) Events(ctx context.Context, version string) ([]Event, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT at, state, note FROM events WHERE version = ? ORDER BY id`), version)
	if err != nil {
		return nil, fmt.Errorf("store: events of %s: %w", version, err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var at int64
		var raw, note string
		if err := rows.Scan(&at, &raw, &note); err != nil {
			return nil, err
		}
		st, err := decodeState(version, raw)
		if err != nil {
			return nil, err
		}
		out = append(out, Event{Version: version, At: time.Unix(0, at), State: st, Note: note})
	}
	return out, rows.Err()
}

// tx runs fn in a transaction, committing when it returns nil.
func (s *sqlStore) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store (%s): begin: %w", s.d.name, err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store (%s): commit: %w", s.d.name, err)
	}
	return nil
}
