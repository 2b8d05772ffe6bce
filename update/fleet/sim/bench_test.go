package sim

import (
	"context"
	"testing"

	"github.com/pqbranch/pqbranch/update/fleet/store"
	"github.com/pqbranch/pqbranch/update/fleet/store/pgtest"
)

// BenchmarkFleet100k runs the 100,000-device simulation of a good release
// once per iteration (run it with -benchtime 1x) on SQLite and on a durable
// private PostgreSQL, reporting wall time, reports per second into the
// store and bytes per check-in. For make bench:
//
//	go test -run '^$' -bench Fleet100k -benchtime 1x -timeout 30m ./update/fleet/sim/
func BenchmarkFleet100k(b *testing.B) {
	const devices = 100_000
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				var st store.Store
				if name == "postgres" {
					var err error
					st, err = store.OpenPostgres(context.Background(), pgtest.Start(b, pgtest.Options{Durable: true}))
					if err != nil {
						b.Fatal(err)
					}
				}
				res, err := Run(context.Background(), Config{Devices: devices, Canary: 50, Dir: b.TempDir(), Store: st})
				if st != nil {
					st.Close()
				}
				if err != nil {
					b.Fatal(err)
				}
				if res.Committed != devices {
					b.Fatalf("%d of %d committed (%s)", res.Committed, devices, res.Final)
				}
				b.ReportMetric(res.Wall.Seconds(), "wall-s")
				b.ReportMetric(res.ReportsPerSecond(), "reports/s")
				b.ReportMetric(res.BytesPerCheckIn(), "bytes/check-in")
				b.ReportMetric(float64(res.CheckIns), "check-ins")
			}
		})
	}
}
