package fanout

// registry indexes the open subscribers: by room, for broadcasting (a
// subscriber is in the list of each of its rooms, once); by session, so
// the per-session cap and EndSession look at that session's streams only;
// and all of them once, for what goes to every stream. Guarded by Hub.mu.
type registry struct {
	rooms    map[string][]*Subscriber
	sessions map[string][]*Subscriber
	all      []*Subscriber
	modes    [numModes]int // open streams by mode
}

func newRegistry() registry {
	return registry{
		rooms:    make(map[string][]*Subscriber),
		sessions: make(map[string][]*Subscriber),
	}
}

// total is the number of open streams.
func (r *registry) total() int { return len(r.all) }

func (r *registry) add(s *Subscriber) {
	for i, room := range s.rooms {
		s.roomIdx[i] = len(r.rooms[room])
		r.rooms[room] = append(r.rooms[room], s)
	}
	s.sessionIdx = len(r.sessions[s.session])
	r.sessions[s.session] = append(r.sessions[s.session], s)
	s.allIdx = len(r.all)
	r.all = append(r.all, s)
	r.modes[s.mode]++
}

func (r *registry) remove(s *Subscriber) {
	for i, room := range s.rooms {
		cut(r.rooms, room, s.roomIdx[i], func(o *Subscriber, j int) {
			k, _ := roomIndex(o.rooms, room)
			o.roomIdx[k] = j
		})
	}
	cut(r.sessions, s.session, s.sessionIdx, func(o *Subscriber, j int) { o.sessionIdx = j })
	r.all = cutAt(r.all, s.allIdx, func(o *Subscriber, j int) { o.allIdx = j })
	if len(r.all) == 0 && cap(r.all) > keepCap {
		r.all = nil
	}
	r.modes[s.mode]--
}

// cut removes element i of index[key] (see cutAt); an emptied list leaves
// the map.
func cut(index map[string][]*Subscriber, key string, i int, setIdx func(*Subscriber, int)) {
	list := cutAt(index[key], i, setIdx)
	if len(list) == 0 {
		delete(index, key)
		return
	}
	index[key] = list
}

// cutAt removes element i of list by moving the last one into its place
// (setIdx records the new position) and returns the shortened list.
func cutAt(list []*Subscriber, i int, setIdx func(*Subscriber, int)) []*Subscriber {
	last := len(list) - 1
	if i != last {
		list[i] = list[last]
		setIdx(list[i], i)
	}
	list[last] = nil
	return list[:last]
}
