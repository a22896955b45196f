package fanout

// registry indexes the open subscribers by room, for broadcasting, and by
// session, so the per-session cap and EndSession look at that session's
// streams only. Guarded by Hub.mu.
type registry struct {
	rooms    map[string][]*Subscriber
	sessions map[string][]*Subscriber
	modes    [numModes]int // open streams by mode
	total    int
}

func newRegistry() registry {
	return registry{
		rooms:    make(map[string][]*Subscriber),
		sessions: make(map[string][]*Subscriber),
	}
}

func (r *registry) add(s *Subscriber) {
	s.roomIdx = len(r.rooms[s.room])
	r.rooms[s.room] = append(r.rooms[s.room], s)
	s.sessionIdx = len(r.sessions[s.session])
	r.sessions[s.session] = append(r.sessions[s.session], s)
	r.modes[s.mode]++
	r.total++
}

func (r *registry) remove(s *Subscriber) {
	cut(r.rooms, s.room, s.roomIdx, func(o *Subscriber, i int) { o.roomIdx = i })
	cut(r.sessions, s.session, s.sessionIdx, func(o *Subscriber, i int) { o.sessionIdx = i })
	r.modes[s.mode]--
	r.total--
}

// cut removes element i of index[key] by moving the last one into its
// place (setIdx records the new position); an emptied list leaves the map.
func cut(index map[string][]*Subscriber, key string, i int, setIdx func(*Subscriber, int)) {
	list := index[key]
	last := len(list) - 1
	if i != last {
		list[i] = list[last]
		setIdx(list[i], i)
	}
	list[last] = nil
	if last == 0 {
		delete(index, key)
		return
	}
	index[key] = list[:last]
}
