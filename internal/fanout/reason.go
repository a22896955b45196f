package fanout

// Reason says why the server ended a stream.
type Reason int

// The reasons a stream ends.
const (
	ReasonNone       Reason = iota // not ended, or cancelled before it was served
	ReasonClientGone               // the client closed the connection or a write failed
	ReasonSlow                     // its backlog exceeded a bound: it did not keep up
	ReasonStalled                  // it had bytes pending and none was written for WriteTimeout
	ReasonShutdown                 // the server is shutting down
	ReasonLoggedOut                // its session logged out
	ReasonBanned                   // a moderator banned its user or address
	ReasonKicked                   // a moderator ended its user's sessions
	numReasons
)

// String is the reason's name in logs, metrics and the disconnect event.
func (r Reason) String() string {
	switch r {
	case ReasonClientGone:
		return "client-gone"
	case ReasonSlow:
		return "slow"
	case ReasonStalled:
		return "stalled"
	case ReasonShutdown:
		return "shutdown"
	case ReasonLoggedOut:
		return "logged-out"
	case ReasonBanned:
		return "banned"
	case ReasonKicked:
		return "kicked"
	}
	return "none"
}

// MarshalText makes a Reason a readable JSON object key (Stats.Closes).
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Told reports whether the client is sent a last event saying why
// (Config.Disconnect), where its socket takes it without blocking anyone:
// these are the reasons a client should act on.
func (r Reason) Told() bool {
	return r == ReasonSlow || r == ReasonShutdown || r == ReasonLoggedOut || r == ReasonBanned || r == ReasonKicked
}
