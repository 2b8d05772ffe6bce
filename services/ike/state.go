package ike

import "fmt"

// State is where a Session is in its life. Status reports it by its String,
// which is the vocabulary of the status page and the -once applet.
type State uint8

const (
	// StateDown: no IKE SA. The session waits to (re)connect, or is closed.
	StateDown State = iota
	// StateConnecting: IKE_SA_INIT, IKE_INTERMEDIATE or IKE_AUTH is running.
	StateConnecting
	// StateEstablished: an authenticated IKE SA with at least one Child SA
	// installed in the kernel. Never reported without one.
	StateEstablished
)

func (s State) String() string {
	switch s {
	case StateDown:
		return "down"
	case StateConnecting:
		return "connecting"
	case StateEstablished:
		return "established"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}
