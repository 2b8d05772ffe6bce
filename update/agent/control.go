package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Command is a request on the control socket.
type Command string

const (
	CmdStatus   Command = "status"
	CmdCheck    Command = "check"
	CmdInstall  Command = "install" // Path: absolute path of a bundle file
	CmdApplyNow Command = "apply-now"
	CmdCancel   Command = "cancel"
)

// Request is one line on the control socket.
type Request struct {
	Cmd  Command `json:"cmd"`
	Path string  `json:"path,omitempty"`
}

// Response is the agent's one line in answer. Status is always set when
// the agent answered at all, so a client can show where things stand.
type Response struct {
	OK     bool    `json:"ok"`
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
}

// maxLine bounds a request or response line.
const maxLine = 64 << 10

// request is a check or install handed to the worker.
type request struct {
	cmd   Command
	path  string
	reply func(error)
}

// listen opens the control socket, replacing a stale one, readable by
// root only: it can make the machine reboot.
func listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("agent: control socket: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("agent: control socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("agent: control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("agent: control socket: %w", err)
	}
	return ln, nil
}

// serve answers clients until ctx ends.
func (a *Agent) serve(ctx context.Context, ln net.Listener) {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				a.log.Error("control socket", "err", err)
			}
			return
		}
		go a.serveConn(ctx, c)
	}
}

func (a *Agent) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 4096), maxLine)
	enc := json.NewEncoder(c)
	for sc.Scan() {
		var req Request
		var resp Response
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			resp.Error = fmt.Sprintf("request: %v", err)
		} else if err := a.Do(ctx, req); err != nil {
			resp.Error = err.Error()
		} else {
			resp.OK = true
		}
		st := a.Status()
		resp.Status = &st
		if err := enc.Encode(resp); err != nil {
			return
		}
	}
}

// Do carries out one control request. Check and install return once the
// bundle's header is judged; the download goes on in the background.
func (a *Agent) Do(ctx context.Context, req Request) error {
	switch req.Cmd {
	case CmdStatus:
		return nil
	case CmdCheck:
		if a.src == nil {
			return errors.New("check: neither update.url nor update.repository is configured")
		}
		return a.toWorker(ctx, request{cmd: CmdCheck})
	case CmdInstall:
		if !filepath.IsAbs(req.Path) {
			return fmt.Errorf("install: path %q: expected an absolute path", req.Path)
		}
		return a.toWorker(ctx, request{cmd: CmdInstall, path: req.Path})
	case CmdApplyNow:
		return a.applyNowCmd()
	case CmdCancel:
		return a.cancelCmd()
	default:
		return fmt.Errorf("command %q: unknown; expected status, check, install, apply-now or cancel", req.Cmd)
	}
}

// toWorker hands a check or install to the worker and waits for its
// verdict on the header.
func (a *Agent) toWorker(ctx context.Context, r request) error {
	if st := a.stage(); st.busy() || st == Rebooting || st == Trial {
		return fmt.Errorf("%s: busy (%s); try again later or cancel first", r.cmd, st)
	}
	done := make(chan error, 1)
	r.reply = func(err error) { done <- err }
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	select {
	case a.reqs <- r:
	case <-ctx.Done():
		return fmt.Errorf("%s: the agent is busy: %w", r.cmd, ctx.Err())
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%s: no answer: %w", r.cmd, ctx.Err())
	}
}

func (a *Agent) applyNowCmd() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch a.st.State {
	case Staged, Checking, Downloading, Verifying:
		// While downloading, the flag makes the update apply as soon as it is staged.
		a.applyNow = true
		select {
		case a.wake <- struct{}{}:
		default:
		}
		return nil
	}
	return fmt.Errorf("apply-now: nothing staged (state %s)", a.st.State)
}

func (a *Agent) cancelCmd() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch a.st.State {
	case Checking, Downloading, Verifying, Staged:
		if a.op == nil {
			return fmt.Errorf("cancel: nothing to cancel (state %s)", a.st.State)
		}
		a.cancelled = true
		a.applyNow = false
		a.op()
		return nil
	case Rebooting, Trial:
		return fmt.Errorf("cancel: too late (state %s): the trial commits or rolls back by itself", a.st.State)
	}
	return fmt.Errorf("cancel: nothing to cancel (state %s)", a.st.State)
}

// Call sends one request to the agent at socket and returns its answer.
// A refused request comes back as an error with the Response beside it.
func Call(ctx context.Context, socket string, req Request) (*Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("update agent: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("update agent %s: %w", socket, err)
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 4096), maxLine)
	if !sc.Scan() {
		err := sc.Err()
		if err == nil {
			err = errors.New("closed without an answer")
		}
		return nil, fmt.Errorf("update agent %s: %w", socket, err)
	}
	var resp Response
	if err := json.Unmarshal(sc.Bytes(), &resp); err != nil {
		return nil, fmt.Errorf("update agent %s: bad answer: %w", socket, err)
	}
	if !resp.OK {
		return &resp, fmt.Errorf("update %s: %s", req.Cmd, resp.Error)
	}
	return &resp, nil
}
