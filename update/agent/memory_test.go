package agent

import (
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/update/bundle"
	"github.com/pqbranch/pqbranch/update/slots"
)

// genPayload is a large deterministic payload that never sits in memory:
// each 8-byte word is a hash of its offset.
type genPayload struct{ size int64 }

func (g genPayload) ReadAt(p []byte, off int64) (int, error) {
	if off >= g.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), g.size-off))
	var w [8]byte
	for i := 0; i < n; {
		word := uint64(off+int64(i)) / 8
		x := word*0x9e3779b97f4a7c15 + 1
		x ^= x >> 31
		binary.LittleEndian.PutUint64(w[:], x*0xbf58476d1ce4e5b9)
		j := int((off + int64(i)) % 8)
		c := copy(p[i:n], w[j:])
		i += c
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// fileSlots is a SlotIO of plain files standing in for the partitions.
type fileSlots struct {
	dir  string
	size int64
}

func (f fileSlots) OpenSlot(slot string) (Device, error) {
	return slots.CreateFile(filepath.Join(f.dir, "slot-"+slot), f.size)
}

// writeBundleFile signs a payload of size bytes (1 MiB chunks) into a file.
func writeBundleFile(t testing.TB, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "update.pqb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := bundle.Write(f, rel("0.2.0", 3, 2000), genPayload{size}, size, testKey()); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBoundedMemory: a 64 MiB bundle is verified and written with a few
// MiB of heap: the payload is never buffered.
func TestBoundedMemory(t *testing.T) {
	const size = 64 << 20
	path := writeBundleFile(t, size)
	r := newRig(t)
	disk := fileSlots{dir: t.TempDir(), size: size + 1<<20}
	a, _ := r.run("A", func(o *Options) { o.Disk = disk; o.Window = night })
	waitState(t, a, Idle)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	if err := a.Do(context.Background(), Request{Cmd: CmdInstall, Path: path}); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, a, Staged)
	close(stop)
	wg.Wait()
	if st.Bytes != size {
		t.Fatalf("staged %d bytes; expected %d", st.Bytes, size)
	}
	growth := int64(peak.Load()) - int64(base)
	t.Logf("peak heap growth while staging %d MiB: %.1f MiB", size>>20, float64(growth)/(1<<20))
	if growth > 16<<20 {
		t.Fatalf("heap grew by %d bytes; expected well under 16 MiB", growth)
	}
}

// benchSize is the payload of the benchmarks.
const benchSize = 32 << 20

// BenchmarkVerifyAndWrite is the agent's whole path for a local bundle:
// signature, per-chunk verification, writes with fdatasync every few
// chunks, position saves, and the read-back hash.
func BenchmarkVerifyAndWrite(b *testing.B) {
	path := writeBundleFile(b, benchSize)
	dir := b.TempDir()
	a, err := New(Options{
		DataDir: dir, Running: v1, Slot: "A", Disk: fileSlots{dir: dir, size: benchSize},
		Boot: newMemBoot(), Keys: testKeys(), Health: func() (bool, string) { return true, "" },
		Reboot: func(string) error { return nil },
	})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchSize)
	for b.Loop() {
		a.p = persisted{Format: stateFormat}
		a.fetch(context.Background(), fileSource{path}, true, nil)
		if st := a.Status(); st.State != Staged {
			b.Fatalf("state %s: %s", st.State, st.Reason)
		}
	}
}

// BenchmarkRawWrite writes the same payload bytes to a file and syncs once:
// the floor BenchmarkVerifyAndWrite is compared against.
func BenchmarkRawWrite(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "payload")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(f, io.NewSectionReader(genPayload{benchSize}, 0, benchSize)); err != nil {
		b.Fatal(err)
	}
	f.Close()
	b.SetBytes(benchSize)
	for b.Loop() {
		in, err := os.Open(src)
		if err != nil {
			b.Fatal(err)
		}
		out, err := slots.CreateFile(filepath.Join(dir, "slot"), benchSize)
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		for off := int64(0); off < benchSize; off += int64(len(buf)) {
			if _, err := io.ReadFull(in, buf); err != nil {
				b.Fatal(err)
			}
			if _, err := out.WriteAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
		if err := out.Sync(); err != nil {
			b.Fatal(err)
		}
		in.Close()
		out.Close()
	}
}
