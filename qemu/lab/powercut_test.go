package lab

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/status"
	"github.com/pqbranch/pqbranch/update/agent"
)

// cutPhase is the part of an update a power cut lands in.
type cutPhase uint8

const (
	cutDownload  cutPhase = iota // chunks being fetched and written to the inactive slot
	cutVerify                    // the inactive slot being read back
	cutSwitch                    // BootNext written, the reboot under way
	cutFirstBoot                 // the new slot's first boot, before its commit
	cutPhases
)

func (p cutPhase) String() string {
	return [...]string{"download", "verify", "boot-entry switch", "first boot"}[p]
}

// powerCuts is how many cuts TestUpdatePowerCuts makes: 6 in make test,
// PQB_POWERCUTS (make powercut: 20) when set.
func powerCuts(t *testing.T) int {
	n := 6
	if s := os.Getenv("PQB_POWERCUTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("PQB_POWERCUTS=%q: expected a positive whole number", s)
		}
	}
	return n
}

// TestUpdatePowerCuts pulls the plug on a box at random moments of its
// updates: during the download, the read-back, the boot-entry switch and
// the new slot's first boot. After every cut the box must boot a good slot
// with its config intact, and every update must still complete. Each
// update (alternately to two releases, so the slots swap) takes at most
// one cut per phase, in phase order.
func TestUpdatePowerCuts(t *testing.T) {
	needLab(t)
	// Each boots its own box in its own lab; under TCG a VM keeps one core
	// busy, so the two share the machine's two.
	t.Parallel()
	cuts := powerCuts(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(10+4*cuts)*time.Minute)
	defer cancel()
	v1, _ := defaultRelease(t)
	rels := []testRelease{
		buildRelease(t, "0.2.0-powercut", v1.Epoch+100, ""),
		buildRelease(t, "0.3.0-powercut", v1.Epoch+200, ""),
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	t.Logf("random seed %d", seed)

	l := startUpdateLab(ctx, t)
	waitBanner(ctx, t, l, 0)
	running, slot := v1.Version, "A"
	healthyOn(ctx, t, l, running, slot)

	tally := map[cutPhase]int{}
	for done, i := 0, 0; done < cuts; i++ {
		target := rels[i%len(rels)]
		other := map[string]string{"A": "B", "B": "A"}[slot]
		// Phases this update will cut, in order: the first update takes
		// all four, later ones a random non-empty subset, until the count
		// is reached.
		var plan []cutPhase
		for p := cutPhase(0); p < cutPhases && done+len(plan) < cuts; p++ {
			if i == 0 || rng.IntN(2) == 0 {
				plan = append(plan, p)
			}
		}
		if len(plan) == 0 {
			plan = []cutPhase{cutPhase(rng.IntN(int(cutPhases)))}
		}
		t.Logf("update %d: %s -> %s (slot %s -> %s), cuts in %v", i+1, running, target.Version, slot, other, plan)
		if err := l.Publish(target.Bundle, bundleName); err != nil {
			t.Fatal(err)
		}
		console(ctx, t, l, "update check")
		inTrial := false // the box was just powered on into the target's trial boot
		for k, p := range plan {
			at := cutAt(ctx, t, l, p, rng, inTrial)
			if err := l.PowerCut(); err != nil {
				t.Fatal(err)
			}
			tally[p]++
			done++
			t.Logf("cut %d (%s) %s", done, p, at)
			if err := l.PowerOn(ctx); err != nil {
				t.Fatal(err)
			}
			version, booted := waitBanner(ctx, t, l, 0)
			armed := p >= cutSwitch && version == target.Version && booted == other
			if !armed && (version != running || booted != slot) {
				t.Fatalf("after a cut in %s the box booted %s from %s; want %s from %s (or the target once armed)", p, version, booted, running, slot)
			}
			// A cut right after the switch lands in the trial boot: the
			// next cut, if it is the first boot's, takes that very boot.
			if inTrial = p == cutSwitch && armed && k+1 < len(plan) && plan[k+1] == cutFirstBoot; inTrial {
				continue
			}
			healthyOn(ctx, t, l, version, booted)
		}
		// Whatever was cut, the update completes.
		if r, err := l.Status(ctx); err == nil && r.Update.State == agent.Staged {
			console(ctx, t, l, "update apply-now")
		}
		deadline := time.Now().Add(12 * time.Minute)
		for {
			r, err := l.Status(ctx)
			if err == nil && r.Update.State == agent.Staged {
				retype(ctx, t, l, "update apply-now")
			}
			// Committed: the box runs the target from the other slot and
			// the last result says so (the state itself may already be
			// idle again: a cut after the commit starts a fresh agent).
			if err == nil && r.Version == target.Version && r.Slot == other && r.Update.Last != nil &&
				r.Update.Last.Result == agent.OutcomeCommitted && r.Update.Last.To == target.Version {
				break
			}
			if time.Now().After(deadline) {
				desc := "no status"
				if r != nil {
					desc = describe(r.Update)
				}
				t.Fatalf("update %d to %s did not complete after its cuts: %v %s\nconsole:\n%s", i+1, target.Version, err, desc, consoleTail(l, 80))
			}
			time.Sleep(2 * time.Second)
		}
		r := healthyOn(ctx, t, l, target.Version, other)
		checkBootSteady(t, r.Update, other)
		running, slot = target.Version, other
	}
	var rows []string
	for p := cutPhase(0); p < cutPhases; p++ {
		rows = append(rows, fmt.Sprintf("%s %d", p, tally[p]))
	}
	sort.Strings(rows)
	t.Logf("POWERCUT TALLY: %d cuts, all recovered: %s", cuts, strings.Join(rows, ", "))
}

// cutAt waits for a random moment inside phase p and says what it saw.
// inTrial says the box already shows the banner of the trial boot.
func cutAt(ctx context.Context, t *testing.T, l *Lab, p cutPhase, rng *rand.Rand, inTrial bool) string {
	t.Helper()
	switch p {
	case cutDownload:
		pct := 5 + rng.Float64()*75
		nudge := nudger(ctx, t, l)
		r := waitUpdate(ctx, t, l, "download", 8*time.Minute, func(u status.UpdateStatus) bool {
			nudge(u)
			return u.State == agent.Downloading && u.Percent >= pct
		})
		return fmt.Sprintf("at %.0f%% of the download", r.Update.Percent)
	case cutVerify:
		nudge := nudger(ctx, t, l)
		waitUpdate(ctx, t, l, "read-back", 8*time.Minute, func(u status.UpdateStatus) bool {
			nudge(u)
			return u.State == agent.Verifying || u.State == agent.Staged
		})
		return "during the read-back"
	case cutSwitch:
		waitUpdate(ctx, t, l, "staging", 8*time.Minute, staged(nudger(ctx, t, l)))
		mark := l.VM.Mark()
		console(ctx, t, l, "update apply-now")
		if _, err := l.VM.WaitLineAfter(ctx, mark, regexp.MustCompile(`update: rebooting`)); err != nil {
			t.Fatalf("no reboot for the update: %v", err)
		}
		d := time.Duration(rng.IntN(1500)) * time.Millisecond
		time.Sleep(d)
		return fmt.Sprintf("%v after BootNext and the reboot request", d)
	case cutFirstBoot:
		if !inTrial {
			mark := l.VM.Mark()
			waitUpdate(ctx, t, l, "staging", 8*time.Minute, staged(nudger(ctx, t, l)))
			console(ctx, t, l, "update apply-now")
			if _, err := l.VM.WaitLineAfter(ctx, mark, regexp.MustCompile(`^pqbranch \S+ board=qemu-x86_64 slot=[AB]$`)); err != nil {
				t.Fatalf("no trial boot: %v", err)
			}
		}
		d := time.Duration(rng.IntN(20000)) * time.Millisecond
		time.Sleep(d)
		return fmt.Sprintf("%v into the trial boot", d)
	}
	t.Fatalf("unknown phase %d", p)
	return ""
}

// nudger returns a check that types `update check` again, at most every
// 30 s, while the box is idle or failed: a command entered just before a
// cut is lost with the power.
func nudger(ctx context.Context, t *testing.T, l *Lab) func(status.UpdateStatus) {
	last := time.Now() // the caller has just typed one
	return func(u status.UpdateStatus) {
		if (u.State == agent.Idle || u.State == agent.Failed || u.State == agent.Committed) && time.Since(last) > 30*time.Second {
			last = time.Now()
			retype(ctx, t, l, "update check")
		}
	}
}

// staged accepts a staged update, nudging the box meanwhile.
func staged(nudge func(status.UpdateStatus)) func(status.UpdateStatus) bool {
	return func(u status.UpdateStatus) bool {
		nudge(u)
		return u.State == agent.Staged
	}
}
