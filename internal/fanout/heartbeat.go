package fanout

import "time"

// heartbeats queues Config.Ping to every stream each Config.Heartbeat, until
// the hub stops. A ping keeps proxies from closing an idle stream, and
// makes the shared writers look at every pooled connection: one whose peer
// has closed is closed as ReasonClientGone (see poolWriter.service).
func (h *Hub) heartbeats() {
	t := time.NewTicker(h.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.BroadcastAll(h.cfg.Ping)
		}
	}
}
