package rollout

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestValidate(t *testing.T) {
	good := DefaultPlan([]string{"dev-1"}, time.Hour)
	if err := good.Validate(); err != nil {
		t.Fatalf("default plan: %v", err)
	}
	for _, tc := range []struct {
		name string
		plan Plan
		want string
	}{
		{"empty", Plan{}, `"waves": empty`},
		{"not 100", Plan{Waves: []Wave{{Name: "a", Percent: 50}}}, "reaches 50%"},
		{"decreasing", Plan{Waves: []Wave{{Name: "a", Percent: 50}, {Name: "b", Percent: 10}}}, `waves[1] ("b"): field "percent": is 10; expected more than 50`},
		{"late canary", Plan{Waves: []Wave{{Name: "a", Percent: 50}, {Name: "c", Devices: []string{"x"}}}}, "only the first wave may be a canary"},
		{"duplicate", Plan{Waves: []Wave{{Name: "a", Percent: 50}, {Name: "a", Percent: 100}}}, "duplicate"},
		{"threshold", Plan{Waves: []Wave{{Name: "a", Percent: 100, MaxFailure: 2}}}, `"max_failure": is 2`},
		{"no name", Plan{Waves: []Wave{{Percent: 100}}}, `"name": missing`},
	} {
		err := tc.plan.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v; want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// TestCohortSpread: positions are uniform enough that a 10% wave holds about
// 10% of a fleet, and a new release reshuffles the fleet.
func TestCohortSpread(t *testing.T) {
	const n = 20000
	p := DefaultPlan(nil, 0)
	counts := make([]int, len(p.Waves))
	same := 0
	for i := range n {
		id := fmt.Sprintf("dev-%d", i)
		counts[p.WaveOf(id, "1.0")]++
		if (Position(id, "1.0") < 10) == (Position(id, "2.0") < 10) && Position(id, "1.0") < 10 {
			same++
		}
	}
	want := []float64{1, 9, 40, 50}
	for i, c := range counts {
		got := 100 * float64(c) / n
		if got < want[i]*0.85 || got > want[i]*1.15 {
			t.Errorf("wave %s holds %.2f%% of the fleet; want about %g%%", p.Waves[i].Name, got, want[i])
		}
	}
	// Independent releases: about 10% of the first 10% are again in the first 10%.
	if same > n/10/5 {
		t.Errorf("%d devices stay in the first 10%% across releases; want about %d", same, n/100)
	}
	if w := DefaultPlan([]string{"dev-7"}, 0).WaveOf("dev-7", "1.0"); w != 0 {
		t.Errorf("canary device is in wave %d; want 0", w)
	}
}

func TestApply(t *testing.T) {
	p := DefaultPlan([]string{"c"}, time.Hour)
	running := State{Phase: Running, Open: 2, OpenedAt: t0}
	for _, tc := range []struct {
		from State
		cmd  Command
		want State
		err  bool
	}{
		{State{}, Start, State{Phase: Running, Open: 1, OpenedAt: t0.Add(time.Minute)}, false},
		{running, Start, running, true},
		{running, Advance, State{Phase: Running, Open: 3, OpenedAt: t0.Add(time.Minute), Reason: "why"}, false},
		{State{Phase: Running, Open: 5}, Advance, State{Phase: Running, Open: 5}, true},
		{State{Phase: Halted, Open: 2}, Advance, State{Phase: Halted, Open: 2}, true},
		{running, Pause, State{Phase: Paused, Open: 2, OpenedAt: t0, Reason: "why"}, false},
		{State{Phase: Paused, Open: 2}, Resume, State{Phase: Running, Open: 2, OpenedAt: t0.Add(time.Minute)}, false},
		{State{Phase: Halted, Open: 2}, Resume, State{Phase: Running, Open: 2, OpenedAt: t0.Add(time.Minute)}, false},
		{running, Resume, running, true},
		{running, Abort, State{Phase: Aborted, Open: 2, OpenedAt: t0, Reason: "why"}, false},
		{State{Phase: Aborted, Open: 2}, Abort, State{Phase: Aborted, Open: 2}, true},
	} {
		got, err := p.Apply(tc.from, tc.cmd, t0.Add(time.Minute), "why")
		if (err != nil) != tc.err || (err != nil && !errors.Is(err, ErrTransition)) {
			t.Errorf("%v on %v: error %v; want error %v", tc.cmd, tc.from, err, tc.err)
		}
		if got != tc.want {
			t.Errorf("%v on %v: got %+v; want %+v", tc.cmd, tc.from, got, tc.want)
		}
	}
}

func TestGate(t *testing.T) {
	p := DefaultPlan([]string{"c1", "c2"}, time.Hour)
	p.Waves[1].MinSuccess = 0.5
	open := func(n int) State { return State{Phase: Running, Open: n, OpenedAt: t0} }
	for _, tc := range []struct {
		name  string
		from  State
		stats []WaveStats
		at    time.Duration
		want  State
	}{
		{"soaking", open(1), []WaveStats{{Eligible: 2, Updated: 2}}, 30 * time.Minute, open(1)},
		{"soaked", open(1), []WaveStats{{Eligible: 2, Updated: 2}}, time.Hour, State{Phase: Running, Open: 2, OpenedAt: t0.Add(time.Hour)}},
		{"halt before soak", open(1), []WaveStats{{Eligible: 10, Updated: 1, Failed: 1}}, time.Minute,
			State{Phase: Halted, Open: 1, OpenedAt: t0, Reason: `wave "canary": 1 of 10 devices failed (10.0%; at most 5.0% allowed)`}},
		{"at threshold is fine", open(1), []WaveStats{{Eligible: 20, Updated: 19, Failed: 1}}, time.Hour, State{Phase: Running, Open: 2, OpenedAt: t0.Add(time.Hour)}},
		{"older wave fails late", open(2), []WaveStats{{Eligible: 2, Failed: 1}, {Eligible: 20, Updated: 20}}, time.Hour,
			State{Phase: Halted, Open: 2, OpenedAt: t0, Reason: `wave "canary": 1 of 2 devices failed (50.0%; at most 5.0% allowed)`}},
		{"too few successes", open(2), []WaveStats{{Eligible: 2, Updated: 2}, {Eligible: 20, Updated: 9}}, 2 * time.Hour, open(2)},
		{"enough successes", open(2), []WaveStats{{Eligible: 2, Updated: 2}, {Eligible: 20, Updated: 10}}, 2 * time.Hour, State{Phase: Running, Open: 3, OpenedAt: t0.Add(2 * time.Hour)}},
		{"last wave soaked", open(5), make([]WaveStats, 5), time.Hour, State{Phase: Complete, Open: 5, OpenedAt: t0}},
		{"paused stays", State{Phase: Paused, Open: 1, OpenedAt: t0}, []WaveStats{{Eligible: 1, Failed: 1}}, time.Hour, State{Phase: Paused, Open: 1, OpenedAt: t0}},
	} {
		if got := p.Gate(tc.from, tc.stats, t0.Add(tc.at)); got != tc.want {
			t.Errorf("%s: got %+v; want %+v", tc.name, got, tc.want)
		}
	}
}

func TestDecide(t *testing.T) {
	plan := DefaultPlan([]string{"canary-1"}, time.Hour)
	rel := func(v string, epoch int64, s State) Candidate {
		return Candidate{Target: "qemu/" + v + ".pqb", Version: v, Board: "qemu", Epoch: epoch, Plan: plan, State: s}
	}
	// A device in the last (50% → 100%) wave of release 2.0.
	late := ""
	for i := 0; late == ""; i++ {
		if id := fmt.Sprintf("d%d", i); plan.WaveOf(id, "2.0") == 4 {
			late = id
		}
	}
	running2 := State{Phase: Running, Open: 2}
	all := func(ph Phase) State { return State{Phase: ph, Open: 5} }
	for _, tc := range []struct {
		name   string
		dev    Device
		cands  []Candidate
		pins   map[string]string
		action Action
		target string
		reason string
	}{
		{"canary installs", Device{ID: "canary-1", Board: "qemu", Version: "1.0", Epoch: 1}, []Candidate{rel("2.0", 2, running2)}, nil, Install, "2.0", `wave "canary" is open`},
		{"late wave waits", Device{ID: late, Board: "qemu", Version: "1.0", Epoch: 1}, []Candidate{rel("2.0", 2, running2)}, nil, Stay, "", `wave "100%" not open`},
		{"falls back to an older complete release", Device{ID: late, Board: "qemu", Version: "1.0", Epoch: 1},
			[]Candidate{rel("1.5", 2, all(Complete)), rel("2.0", 3, running2)}, nil, Install, "1.5", ""},
		{"other board", Device{ID: "canary-1", Board: "apu", Version: "1.0", Epoch: 1}, []Candidate{rel("2.0", 2, all(Running))}, nil, Stay, "", "newest release for board apu"},
		{"paused", Device{ID: "canary-1", Board: "qemu", Version: "1.0", Epoch: 1}, []Candidate{rel("2.0", 2, all(Paused))}, nil, Stay, "", "paused"},
		{"halted", Device{ID: "canary-1", Board: "qemu", Version: "1.0", Epoch: 1}, []Candidate{rel("2.0", 2, all(Halted))}, nil, Stay, "", "halted"},
		{"aborted: no downgrade either", Device{ID: "canary-1", Board: "qemu", Version: "2.0", Epoch: 2}, []Candidate{rel("1.0", 1, all(Complete)), rel("2.0", 2, all(Aborted))}, nil, Stay, "", "newest release"},
		{"pinned up", Device{ID: late, Group: "lab", Board: "qemu", Version: "1.0", Epoch: 1}, []Candidate{rel("2.0", 2, State{})}, map[string]string{"lab": "2.0"}, Install, "2.0", "pinned"},
		{"pinned stays", Device{ID: "canary-1", Group: "lab", Board: "qemu", Version: "1.0", Epoch: 1}, []Candidate{rel("2.0", 2, all(Running))}, map[string]string{"lab": "1.0"}, Stay, "", "pinned to 1.0, which runs"},
		{"pin never downgrades", Device{ID: "canary-1", Group: "lab", Board: "qemu", Version: "2.0", Epoch: 2}, []Candidate{rel("1.0", 1, all(Complete))}, map[string]string{"lab": "1.0"}, Stay, "", "no forced downgrade"},
	} {
		d := Decide(tc.dev, tc.cands, tc.pins)
		if d.Action != tc.action || d.Target.Version != tc.target || !strings.Contains(d.Reason, tc.reason) {
			t.Errorf("%s: got %v %q (%s); want %v %q with reason containing %q", tc.name, d.Action, d.Target.Version, d.Reason, tc.action, tc.target, tc.reason)
		}
	}
}

func TestParsePlan(t *testing.T) {
	p, err := ParsePlan("plan.json", []byte(`{"waves":[{"name":"canary","devices":["a"],"soak":"2h","max_failure":0.1},{"name":"all","percent":100,"soak":"0s","max_failure":0.05}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Waves[0].Soak.Std() != 2*time.Hour || p.Waves[1].Percent != 100 {
		t.Errorf("parsed %+v", p)
	}
	for _, bad := range []string{`{"waves":[{"name":"a","percent":100,"soak":"2 hours"}]}`, `{"waves":[],"x":1}`, `{"waves":[{"name":"a","percent":100,"sook":"1h"}]}`} {
		if _, err := ParsePlan("plan.json", []byte(bad)); err == nil || !strings.HasPrefix(err.Error(), "plan.json: ") {
			t.Errorf("%s: got %v; want an error naming plan.json", bad, err)
		}
	}
}

// BenchmarkDecide: the decision alone, per check-in, for a repository with
// a few releases.
func BenchmarkDecide(b *testing.B) {
	plan := DefaultPlan([]string{"c1", "c2", "c3"}, time.Hour)
	cands := []Candidate{
		{Version: "1.0", Board: "qemu", Epoch: 1, Plan: plan, State: State{Phase: Complete, Open: 5}},
		{Version: "2.0", Board: "qemu", Epoch: 2, Plan: plan, State: State{Phase: Running, Open: 3}},
		{Version: "2.0", Board: "apu", Epoch: 2, Plan: plan, State: State{Phase: Running, Open: 3}},
	}
	i := 0
	for b.Loop() {
		i++
		Decide(Device{ID: fmt.Sprintf("dev-%d", i), Board: "qemu", Version: "1.0", Epoch: 1}, cands, nil)
	}
}
