// Package pgtest starts a private PostgreSQL server from Debian's
// postgresql package for tests and benchmarks: a fresh cluster in a temp
// directory, listening only on a unix socket there, stopped and removed by
// Stop (t.Cleanup with Start), pass or fail. As root it runs the server as
// the postgres user, which PostgreSQL insists on.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a running private server.
type Cluster struct {
	Dir string // data directory parent; the socket lives here
	DSN string // pgx connection string
	bin string
	run []string // command prefix ("runuser -u postgres --" as root)
}

// Options tunes the server.
type Options struct {
	// Durable keeps fsync and synchronous_commit on, for benchmarks that
	// should show a real server's commit cost. Tests turn both off.
	Durable bool
}

// Bin finds the newest installed PostgreSQL's bin directory.
func Bin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(dirs) == 0 {
		return "", errors.New("pgtest: no /usr/lib/postgresql/*/bin/initdb: PostgreSQL is not installed; run: apt-get install -y postgresql")
	}
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	return filepath.Dir(dirs[0]), nil
}

func version(initdb string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return v
}

// StartCluster initialises and starts a server.
func StartCluster(ctx context.Context, o Options) (*Cluster, error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pqfleet-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: running as root needs the postgres user (from the postgresql package): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		c.run = []string{"runuser", "-u", "postgres", "--"}
	}
	data := filepath.Join(dir, "data")
	if out, err := c.cmd(ctx, "initdb", "-D", data, "-U", "pqfleet", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	// pg_ctl hands -o to a shell: hence the quotes around the empty value.
	opts := []string{"-k", dir, "-c", "listen_addresses=''", "-c", "max_connections=200", "-c", "shared_buffers=64MB"}
	if !o.Durable {
		opts = append(opts, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	if out, err := c.cmd(ctx, "pg_ctl", "-D", data, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60",
		"-o", strings.Join(opts, " "), "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: pg_ctl start: %w\n%s\n%s", err, out, log)
	}
	c.DSN = fmt.Sprintf("host=%s user=pqfleet dbname=postgres sslmode=disable", dir)
	return c, nil
}

func (c *Cluster) cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := append(append(append([]string{}, c.run...), filepath.Join(c.bin, name)), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = c.Dir
	return cmd
}

// Stop stops the server immediately and removes its directory.
func (c *Cluster) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := c.cmd(ctx, "pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", "immediate", "-w", "stop").CombinedOutput()
	os.RemoveAll(c.Dir)
	if err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// Start starts a server for a test or benchmark and stops it in
// t.Cleanup. A missing PostgreSQL fails the test with the apt-get command:
// the PostgreSQL tests are part of the suite, not optional.
func Start(t testing.TB, o Options) string {
	t.Helper()
	c, err := StartCluster(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	return c.DSN
}
