package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pqbranch/pqbranch/update/bundle"
)

// persistEvery is how many chunks are written between two saves of the
// download position: a power cut costs at most this many chunks again
// (16 MiB with the default chunk size), and each save costs an fdatasync
// of the slot and of state.json.
const persistEvery = 16

// maxChunkSize bounds the one chunk buffer the agent holds, whatever a
// (signed) manifest says: memory stays bounded.
const maxChunkSize = 8 << 20

// errUpToDate and errFailedBefore end a check without an update; they are
// not failures of the device.
var (
	errUpToDate     = errors.New("up to date")
	errFailedBefore = errors.New("failed its trial before")
)

// fetch checks src's bundle and, if it is an update, downloads it into the
// inactive slot and reads it back. explicit marks an operator's request:
// it retries a bundle rejected earlier. reply, if set, is called once,
// as soon as the header is judged: nil means the download started.
//
// It reports whether the failure is one to retry by itself: the network or
// the server failed (the WAN is not up yet at boot, a link dropped
// mid-download), not a bundle the device refuses.
func (a *Agent) fetch(ctx context.Context, src source, explicit bool, reply func(error)) (retry bool) {
	replied := false
	answer := func(err error) {
		if reply != nil && !replied {
			replied = true
			reply(err)
		}
	}
	defer answer(nil)
	if src == nil {
		answer(errors.New("neither update.url nor update.repository is configured"))
		return false
	}
	prev := a.stage()
	a.set(func(s *Status) {
		s.State, s.Source, s.Reason = Checking, src.String(), ""
	})
	opCtx, end := a.beginOp(ctx)
	defer end()

	err := a.download(opCtx, src, explicit, answer)
	switch {
	case err == nil:
		return false
	case errors.Is(err, errUpToDate), errors.Is(err, errFailedBefore), errors.Is(err, errNotOffered):
		a.log.Info("update check", "source", src, "result", err)
		after := Idle
		if prev == Committed || prev == RolledBack {
			after = prev // keep showing the last outcome
		}
		a.settle(after, err)
	case ctx.Err() != nil:
		// Shutting down: the saved position resumes the download next start.
		a.settle(Idle, err)
	case a.cancelledByOperator():
		a.drop()
	default:
		a.log.Warn("update failed", "source", src, "err", err)
		a.settle(Failed, err)
		retry = transient(err)
	}
	answer(err)
	return retry
}

// transient tells a failure worth retrying (network, server, a link that
// dropped mid-download: the position on /data resumes it) from a bundle
// this device refuses, which only a new bundle or an operator changes.
func transient(err error) bool {
	var bad *badBundle
	if errors.As(err, &bad) {
		return false
	}
	for _, refused := range []error{bundle.ErrFormat, bundle.ErrSignature, bundle.ErrUnsigned, bundle.ErrUnknownKey,
		bundle.ErrChunk, bundle.ErrPayload, bundle.ErrBoard, bundle.ErrSecurityVersion, bundle.ErrUnverified} {
		if errors.Is(err, refused) {
			return false
		}
	}
	return true
}

// download is one check and, if the bundle is an update, the download.
func (a *Agent) download(ctx context.Context, src source, explicit bool, accepted func(error)) error {
	r, err := src.open(ctx, 0)
	if err != nil {
		return err
	}
	defer func() { r.Close() }()
	a.set(func(s *Status) { s.Channel = src.channel() })
	h, err := bundle.ReadHeader(r, a.o.Keys)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", src, err)
	}
	sum := sha256.Sum256(h.Raw)
	headerID := hex.EncodeToString(sum[:])
	rel := h.Manifest.Release
	pay := h.Manifest.Payload

	if err := h.Check(bundle.Policy{Board: a.o.Running.Board, SecurityFloor: a.floor()}); err != nil {
		return fmt.Errorf("bundle %s: %w", src, err)
	}
	vs, repoTarget := src.(verifiedSource)
	if repoTarget {
		if err := vs.expect(rel); err != nil {
			return err
		}
	}
	// The image's own release carries no build id (it cannot hash the
	// slot that holds it); the version names the commit.
	if rel.Version == a.o.Running.Version || (rel.BuildID != "" && rel.BuildID == a.o.Running.BuildID) {
		return fmt.Errorf("%w: %s runs", errUpToDate, rel.Version)
	}
	// Periodic checks only move forward in time; an operator's check or
	// install may go back to an older release (above the security floor).
	if !explicit && rel.Epoch <= a.o.Running.Epoch {
		return fmt.Errorf("%w: %s offers %s, not newer than the running %s", errUpToDate, src, rel.Version, a.o.Running.Version)
	}
	if f, ok := a.p.failed(rel.BuildID); ok {
		return fmt.Errorf("%s (build %s) %w on %s (%s); waiting for a newer release",
			rel.Version, short(rel.BuildID), errFailedBefore, f.At.Format(time.RFC3339), f.Reason)
	}
	if rj := a.p.Rejected; rj != nil && rj.Header == headerID && !explicit {
		return fmt.Errorf("bundle %s: rejected before: %s (run `pqbranch update check` to try again)", src, rj.Reason)
	}
	if d := a.p.Download; d != nil && d.Staged && d.Header == headerID && d.Slot == a.inactive() {
		a.setStaged(rel.Version, "")
		return nil // already staged: nothing to fetch
	}
	if pay.ChunkSize <= 0 || pay.ChunkSize > maxChunkSize {
		return fmt.Errorf("bundle %s: field \"payload.chunk_size\": is %d; expected 1 to %d", src, pay.ChunkSize, maxChunkSize)
	}

	dev, err := a.o.Disk.OpenSlot(a.inactive())
	if err != nil {
		return err
	}
	defer dev.Close()
	if size := dev.Size(); pay.Size > size {
		return fmt.Errorf("bundle %s: payload is %d bytes; slot %s holds only %d", src, pay.Size, a.inactive(), size)
	}

	// Resume only the same bundle into the same slot; anything else
	// (the server replaced the bundle, a new release) starts over.
	d := a.p.Download
	if d == nil || d.Header != headerID || d.Slot != a.inactive() || d.Source != src.String() {
		if d != nil {
			a.log.Info("bundle changed; starting the download over", "source", src, "was", d.Release.Version, "now", rel.Version)
		}
		d = &download{Source: src.String(), Header: headerID, Slot: a.inactive(), Release: rel, Size: pay.Size, SHA256: pay.SHA256,
			Timing: timing{Began: a.o.Now()}}
		a.update(func(p *persisted) {
			p.Download, p.Trial, p.Rejected = d, nil, nil
			a.verified = ""
		})
	}
	accepted(nil)

	start := d.Next
	a.log.Info("downloading update", "source", src, "version", rel.Version, "size", pay.Size, "from_chunk", start)
	if start > 0 {
		r.Close() // reopen where the written chunks end
		r = io.NopCloser(eofReader{})
		reopened := false
		for i := start; i < h.Chunks(); i++ {
			if off, _, stored := h.ChunkRange(i); stored {
				if r, err = src.open(ctx, off); err != nil {
					return fmt.Errorf("resume at chunk %d: %w", i, err)
				}
				reopened = true
				break
			}
		}
		if !reopened && repoTarget {
			// Only zero chunks are left, but the target's hash still
			// needs every stored byte read.
			if r, err = src.open(ctx, payloadEnd(h)); err != nil {
				return fmt.Errorf("resume at the end of the payload: %w", err)
			}
		}
	}
	if err := a.writeChunks(ctx, h, r, dev, d, src); err != nil {
		var bad *badBundle
		if errors.As(err, &bad) {
			a.update(func(p *persisted) {
				p.Download = nil
				p.Rejected = &rejected{Source: src.String(), Header: headerID, Reason: err.Error()}
			})
		}
		return err
	}
	if repoTarget {
		if err := vs.finish(); err != nil {
			a.update(func(p *persisted) {
				p.Download = nil
				p.Rejected = &rejected{Source: src.String(), Header: headerID, Reason: err.Error()}
			})
			return err
		}
	}
	a.update(func(*persisted) { d.Timing.Written = a.o.Now() })
	a.set(func(s *Status) { s.State = Verifying })
	if err := readBack(ctx, dev, d.Size, d.SHA256, pay.ChunkSize); err != nil {
		err = fmt.Errorf("slot %s after writing %s: %w", a.inactive(), rel.Version, err)
		a.update(func(p *persisted) { p.Download = nil })
		return err
	}
	a.update(func(p *persisted) {
		d.Staged = true
		d.Timing.Staged = a.o.Now()
		a.verified = headerID
	})
	a.log.Info("update staged", "version", rel.Version, "slot", a.inactive())
	a.setStaged(rel.Version, "")
	return nil
}

// settle ends an operation that staged nothing new: a staged update
// stays staged (it is still valid), otherwise the state becomes st.
func (a *Agent) settle(st State, why error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if d := a.p.Download; d != nil && d.Staged {
		st = Staged
		a.st.Target = d.Release.Version
	}
	a.st.State, a.st.Reason = st, why.Error()
}

// badBundle marks errors in the bundle's content (a chunk that does not
// verify, a truncated file), as opposed to the transport.
type badBundle struct{ err error }

func (b *badBundle) Error() string { return b.err.Error() }
func (b *badBundle) Unwrap() error { return b.err }

// writeChunks streams chunks d.Next.. from r (positioned at the first
// stored one of them), verifies each, writes it into dev and syncs, and
// saves the position every persistEvery chunks. One chunk buffer is all
// the memory it takes.
func (a *Agent) writeChunks(ctx context.Context, h *bundle.Header, r io.Reader, dev Device, d *download, src source) error {
	chunk := int64(h.Manifest.Payload.ChunkSize)
	buf := make([]byte, chunk)
	sessionStart, sessionBytes := a.o.Now(), int64(0)
	done := min(int64(d.Next)*chunk, d.Size)
	a.set(func(s *Status) {
		s.State, s.Target, s.Total, s.Bytes, s.Rate = Downloading, d.Release.Version, d.Size, done, 0
	})
	n := h.Chunks()
	for i := d.Next; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, stored, isStored := h.ChunkRange(i)
		b := buf[:h.ChunkLen(i)]
		if isStored {
			if int64(len(b)) != stored {
				return &badBundle{fmt.Errorf("bundle %s: chunk %d: stored length %d; expected %d", src, i, stored, len(b))}
			}
			if _, err := io.ReadFull(r, b); err != nil {
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					err = fmt.Errorf("%w: %w", bundle.ErrTruncated, err)
				}
				return fmt.Errorf("bundle %s: chunk %d of %d: %w", src, i, n, err)
			}
			if err := h.VerifyChunk(i, b); err != nil {
				return &badBundle{fmt.Errorf("bundle %s: chunk %d of %d: %w", src, i, n, err)}
			}
		} else {
			clear(b) // zero chunks are not stored, but the slot must read as zeros
		}
		if _, err := dev.WriteAt(b, int64(i)*chunk); err != nil {
			return fmt.Errorf("slot %s: write chunk %d: %w", d.Slot, i, err)
		}
		done += int64(len(b))
		sessionBytes += int64(len(b))
		if (i+1)%persistEvery == 0 || i+1 == n {
			// Durable data first, then the position that claims it.
			if err := dev.Sync(); err != nil {
				return fmt.Errorf("slot %s: %w", d.Slot, err)
			}
			a.update(func(*persisted) { d.Next = i + 1 })
		}
		elapsed := a.o.Now().Sub(sessionStart).Seconds()
		a.set(func(s *Status) {
			s.Bytes = done
			if elapsed > 0 {
				s.Rate = float64(sessionBytes) / elapsed
			}
		})
	}
	return nil
}

// readBack hashes the first size bytes of dev and compares them with the
// manifest's payload hash: this is what the trial boot will run, whatever
// happened between the write and now.
func readBack(ctx context.Context, dev Device, size int64, want string, chunk int) error {
	// Read the medium, not the page cache the download just filled.
	if e, ok := dev.(interface{ Evict() error }); ok {
		if err := e.Evict(); err != nil {
			return fmt.Errorf("read back: %w", err)
		}
	}
	buf := make([]byte, chunk)
	h := sha256.New()
	for off := int64(0); off < size; off += int64(len(buf)) {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := buf[:min(int64(len(buf)), size-off)]
		if n, err := dev.ReadAt(b, off); n < len(b) {
			return fmt.Errorf("read back at %d: %w", off, err)
		}
		h.Write(b)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("read back: sha256 is %s; expected %s (payload.sha256)", got, want)
	}
	return nil
}

// payloadEnd is the file offset just past the last stored chunk.
func payloadEnd(h *bundle.Header) int64 {
	end := h.PayloadOffset
	for i := range h.Chunks() {
		if off, n, stored := h.ChunkRange(i); stored {
			end = off + n
		}
	}
	return end
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// short abbreviates a build id for messages.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
