package main

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/alicebob/miniredis/v2"
	"golang.org/x/sys/unix"
)

// embeddedRedis is the in-process Redis of `go run .` without REDIS_URL
// (miniredis), made to behave like a real one where the chat relies on it:
//   - key TTLs elapse (miniredis moves them only when told to), so limits,
//     lockouts and expiring keys end as they do on a real Redis;
//   - with a data directory, its data outlives the process: saved there
//     every interval and at shutdown, loaded at start. A SIGTERM loses
//     nothing; a SIGKILL or a crash loses at most the last interval.
type embeddedRedis struct {
	m        *miniredis.Miniredis
	log      *slog.Logger
	path     string // the snapshot file; "" when nothing is kept
	lock     *os.File
	interval time.Duration

	mu        sync.Mutex // serialises save
	lastSaved []byte     // the bytes last written, to skip unchanged saves

	stop chan struct{}
	done chan struct{}
}

// snapshotVersion is the format of the file; a file of another version is
// refused rather than misread.
const snapshotVersion = 1

// snapshotName is the file in the data directory.
const snapshotName = "embedded-redis.json"

type snapshot struct {
	Version int           `json:"version"`
	Saved   time.Time     `json:"saved"`
	Keys    []snapshotKey `json:"keys"`
}

// snapshotKey is one key: its type and value, and its expiry (unix ms; 0:
// none).
//
// JSON strings are UTF-8: a key with any other bytes (in its name or
// values) has every string base64-encoded, and B64 set.
type snapshotKey struct {
	B64      bool               `json:"b64,omitempty"`
	Key      string             `json:"key"`
	Type     string             `json:"type"`
	ExpireMS int64              `json:"expire_ms,omitempty"`
	String   string             `json:"string,omitempty"`
	List     []string           `json:"list,omitempty"`
	Set      []string           `json:"set,omitempty"`
	Hash     map[string]string  `json:"hash,omitempty"`
	ZSet     map[string]float64 `json:"zset,omitempty"`
	Stream   []snapshotEntry    `json:"stream,omitempty"`
}

type snapshotEntry struct {
	ID     string   `json:"id"`
	Values []string `json:"values"`
}

// startEmbedded starts the embedded Redis on a loopback port. With dataDir
// set it takes the directory (one server at a time: a second one fails with
// a clear error), loads what was saved there, and saves every interval.
func startEmbedded(dataDir string, interval time.Duration, log *slog.Logger) (*embeddedRedis, error) {
	e := &embeddedRedis{m: miniredis.NewMiniRedis(), log: log, interval: interval,
		stop: make(chan struct{}), done: make(chan struct{})}
	if dataDir != "" {
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("-data-dir: %w", err)
		}
		lock, err := os.OpenFile(filepath.Join(dataDir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, fmt.Errorf("-data-dir: %w", err)
		}
		if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			lock.Close()
			return nil, fmt.Errorf("-data-dir %s is in use by another chat server (%v)", dataDir, err)
		}
		e.lock = lock
		e.path = filepath.Join(dataDir, snapshotName)
		n, err := e.load()
		if err != nil {
			e.release()
			return nil, fmt.Errorf("-data-dir: cannot load %s: %w (move it away to start empty)", e.path, err)
		}
		log.Info("embedded Redis keeps its data", "data_dir", dataDir, "keys_loaded", n,
			"saved_every", interval, "a_crash_loses", "at most the last "+interval.String()+" (a SIGTERM loses nothing)")
	}
	if err := e.m.StartAddr("127.0.0.1:0"); err != nil {
		e.release()
		return nil, fmt.Errorf("start embedded redis: %w", err)
	}
	go e.run()
	return e, nil
}

func (e *embeddedRedis) Addr() string { return e.m.Addr() }

// run moves the TTLs along with the clock, every second, and saves every
// interval.
func (e *embeddedRedis) run() {
	defer close(e.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := time.Now()
	lastSave := last
	for {
		select {
		case <-e.stop:
			return
		case now := <-tick.C:
			e.m.FastForward(now.Sub(last))
			last = now
			if e.path != "" && now.Sub(lastSave) >= e.interval {
				lastSave = now
				if err := e.save(); err != nil {
					e.log.Error("saving the embedded Redis", "file", e.path, "err", err)
				}
			}
		}
	}
}

// Close stops the loop, saves a last time (every client is gone by then),
// and stops the server.
func (e *embeddedRedis) Close() {
	close(e.stop)
	<-e.done
	if e.path != "" {
		if err := e.save(); err != nil {
			e.log.Error("saving the embedded Redis at shutdown", "file", e.path, "err", err)
		} else {
			e.log.Info("embedded Redis saved", "file", e.path)
		}
	}
	e.m.Close()
	e.release()
}

func (e *embeddedRedis) release() {
	if e.lock != nil {
		e.lock.Close() // drops the flock
		e.lock = nil
	}
}

// save writes every key to the snapshot file, atomically (a temporary file,
// synced, renamed over the old one): a crash mid-save leaves the previous
// snapshot. An unchanged snapshot is not rewritten.
func (e *embeddedRedis) save() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	snap, err := e.dump()
	if err != nil {
		return err
	}
	data, err := json.Marshal(snap.Keys)
	if err != nil {
		return err
	}
	if bytes.Equal(data, e.lastSaved) {
		return nil
	}
	out, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	tmp := e.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(out)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, e.path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if dir, err := os.Open(filepath.Dir(e.path)); err == nil {
		dir.Sync() // the rename itself
		dir.Close()
	}
	e.lastSaved = data
	return nil
}

// dump reads every key. Keys are read one by one, each consistent in
// itself; what is written between two reads may or may not be in the
// snapshot, as with a crash at that moment.
func (e *embeddedRedis) dump() (snapshot, error) {
	m := e.m
	keys := m.Keys()
	slices.Sort(keys)
	snap := snapshot{Version: snapshotVersion, Saved: time.Now().UTC(), Keys: make([]snapshotKey, 0, len(keys))}
	now := time.Now()
	for _, k := range keys {
		sk := snapshotKey{Key: k, Type: m.Type(k)}
		var err error
		switch sk.Type {
		case "":
			continue // gone since Keys
		case "string":
			sk.String, err = m.Get(k)
		case "list":
			sk.List, err = m.List(k)
		case "set":
			sk.Set, err = m.Members(k)
		case "hash":
			var fields []string
			fields, err = m.HKeys(k)
			sk.Hash = make(map[string]string, len(fields))
			for _, f := range fields {
				sk.Hash[f] = m.HGet(k, f)
			}
		case "zset":
			sk.ZSet, err = m.SortedSet(k)
		case "stream":
			var entries []miniredis.StreamEntry
			entries, err = m.Stream(k)
			sk.Stream = make([]snapshotEntry, len(entries))
			for i, en := range entries {
				sk.Stream[i] = snapshotEntry{ID: en.ID, Values: slices.Clone(en.Values)}
			}
		default:
			e.log.Warn("embedded Redis: a key of a type that is not saved", "key", k, "type", sk.Type)
			continue
		}
		if errors.Is(err, miniredis.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return snapshot{}, fmt.Errorf("key %q: %w", k, err)
		}
		if ttl := m.TTL(k); ttl > 0 {
			sk.ExpireMS = now.Add(ttl).UnixMilli()
		}
		if !sk.strings(func(s string) (string, error) { return s, nil }, utf8.ValidString) {
			sk.B64 = true
			sk.strings(func(s string) (string, error) { return base64.StdEncoding.EncodeToString([]byte(s)), nil }, nil)
		}
		snap.Keys = append(snap.Keys, sk)
	}
	return snap, nil
}

// load restores the snapshot file, if there is one; keys whose expiry has
// passed are left out. It returns how many keys it restored.
func (e *embeddedRedis) load() (int, error) {
	data, err := os.ReadFile(e.path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var snap snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return 0, fmt.Errorf("not a snapshot: %w", err)
	}
	if snap.Version != snapshotVersion {
		return 0, fmt.Errorf("snapshot version %d, this server reads %d", snap.Version, snapshotVersion)
	}
	m := e.m
	now := time.Now()
	n := 0
	for _, sk := range snap.Keys {
		if sk.B64 {
			var bad error
			sk.strings(func(s string) (string, error) {
				b, err := base64.StdEncoding.DecodeString(s)
				bad = cmp.Or(bad, err)
				return string(b), err
			}, nil)
			if bad != nil {
				return n, fmt.Errorf("key %q: %w", sk.Key, bad)
			}
		}
		var ttl time.Duration
		if sk.ExpireMS > 0 {
			if ttl = time.UnixMilli(sk.ExpireMS).Sub(now); ttl <= 0 {
				continue
			}
		}
		var err error
		switch sk.Type {
		case "string":
			err = m.Set(sk.Key, sk.String)
		case "list":
			if len(sk.List) > 0 {
				_, err = m.RPush(sk.Key, sk.List...)
			}
		case "set":
			if len(sk.Set) > 0 {
				_, err = m.SAdd(sk.Key, sk.Set...)
			}
		case "hash":
			fv := make([]string, 0, 2*len(sk.Hash))
			for f, v := range sk.Hash {
				fv = append(fv, f, v)
			}
			if len(fv) > 0 {
				m.HSet(sk.Key, fv...)
			}
		case "zset":
			for member, score := range sk.ZSet {
				if _, err = m.ZAdd(sk.Key, score, member); err != nil {
					break
				}
			}
		case "stream":
			for _, en := range sk.Stream {
				if _, err = m.XAdd(sk.Key, en.ID, en.Values); err != nil {
					break
				}
			}
		default:
			err = fmt.Errorf("unknown type %q", sk.Type)
		}
		if err != nil {
			return n, fmt.Errorf("key %q: %w", sk.Key, err)
		}
		if ttl > 0 {
			m.SetTTL(sk.Key, ttl)
		}
		n++
	}
	return n, nil
}

// strings applies f to every string of k (its name, values, members,
// fields) in place, and reports whether ok (when given) holds for all of
// them.
func (k *snapshotKey) strings(f func(string) (string, error), ok func(string) bool) bool {
	all := true
	do := func(s string) string {
		if ok != nil && !ok(s) {
			all = false
		}
		out, err := f(s)
		if err != nil {
			return s
		}
		return out
	}
	k.Key = do(k.Key)
	k.String = do(k.String)
	for i := range k.List {
		k.List[i] = do(k.List[i])
	}
	for i := range k.Set {
		k.Set[i] = do(k.Set[i])
	}
	if k.Hash != nil {
		h := make(map[string]string, len(k.Hash))
		for f, v := range k.Hash {
			h[do(f)] = do(v)
		}
		k.Hash = h
	}
	if k.ZSet != nil {
		z := make(map[string]float64, len(k.ZSet))
		for m, sc := range k.ZSet {
			z[do(m)] = sc
		}
		k.ZSet = z
	}
	for i := range k.Stream {
		k.Stream[i].ID = do(k.Stream[i].ID)
		for j := range k.Stream[i].Values {
			k.Stream[i].Values[j] = do(k.Stream[i].Values[j])
		}
	}
	return all
}

// defaultDataDir is where the embedded Redis keeps its data unless
// -data-dir says otherwise: $XDG_DATA_HOME/chatroom, else
// ~/.local/share/chatroom, else ./chatroom-data.
func defaultDataDir(getenv func(string) string) string {
	if d := getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "chatroom")
	}
	if h := getenv("HOME"); filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "share", "chatroom")
	}
	return "chatroom-data"
}
