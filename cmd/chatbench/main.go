// Command chatbench is the chat server's load generator.
//
// It starts a redis-server and K instances of the chat server (or uses the
// given ones), logs users in over HTTP, opens N server-sent-event streams,
// posts M messages at a fixed rate R (open loop), and measures for every
// (subscriber, message) pair the POST→receive latency, plus loss,
// duplicates, order, throughput, server CPU per delivery and server memory
// per connected subscriber (from /proc).
//
// The slow scenario is large with 50 of the 1,000 subscribers stalled: each
// connects with a 4 KiB socket receive buffer and an Ethernet-sized MSS (so
// the kernel sizes the server's send buffer as on a real network, about
// 125 KB, not for loopback's 64 KiB segments, 2.7 MiB), reads the response
// head and the first retry: line, and then never reads again (nor
// reconnects), so the server's writes to it back up within seconds. The other subscribers are measured
// as usual (loss must stay 0, latency should barely move: when large and
// slow run together the ratio of their p99s is printed, target ≤ 1.5×); the
// stalled ones are counted, and drained at the end to see how many the
// server closed. It needs no server flag, so it runs against older servers
// too (-server-bin).
//
// The rooms, spread and storm scenarios (issue 9) spread subscribers and
// messages over rooms (rooms.go): each subscriber is its own user alone in
// one room, so its stream carries that room only, and must get exactly
// that room's messages (any other counts as x-room). storm (storm.go) opens
// the streams while posting and then checks every room's online list, by
// GET /r/{room}/online and by one observer stream per room. The issue's
// targets are printed after the table ("Targets") and written to the JSON.
//
//	go run ./cmd/chatbench -scenario large -runs 3 -json bench.json
//	go run ./cmd/chatbench -scenario large,slow -server-bin /path/to/old/chatroom
//	go run ./cmd/chatbench -smoke
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		os.Exit(1)
	}
}

// scenario is one named load shape.
type scenario struct {
	Name      string
	Subs      int
	Rate      float64 // messages per second; 0 = idle (memory only)
	Instances int
	// Stalled of the Subs subscribers connect and then never read again
	// (see runStalled); they are left out of deliveries, loss and latency.
	Stalled int
	// Rooms > 0 spreads subscribers and messages over that many rooms
	// (see rooms.go): every subscriber is its own user in one room; 0: all
	// in the default room, sharing -sub-users users.
	Rooms int
	// Storm opens the streams during the sending time and checks the
	// rooms' online lists afterwards (see storm.go).
	Storm bool
	// ServerArgs are passed to the servers the bench starts, after the
	// flags every scenario gets.
	ServerArgs []string
	// Targets of issue 9, checked on the medians (0: none).
	MaxP99Ms     float64       // p99 at most this
	CPUAtMostOf  string        // server CPU per delivery at most that of this scenario, when both ran
	OnlineWithin time.Duration // storm: online lists correct this soon after the last connect
	Desc         string
}

// roomArgs lift the per-user rate limit on joining rooms (20 a minute):
// senders join up to 20 rooms each at once.
var roomArgs = []string{"-rate-joins", "0"}

// scenarios are the fixed scenarios, in the order "all" runs them.
var scenarios = []scenario{
	{Name: "small", Subs: 10, Rate: 50, Instances: 1, Desc: "10 subscribers × 50 msg/s"},
	{Name: "medium", Subs: 100, Rate: 100, Instances: 1, Desc: "100 subscribers × 100 msg/s"},
	{Name: "large", Subs: 1000, Rate: 100, Instances: 1, Desc: "1,000 subscribers × 100 msg/s"},
	{Name: "slow", Subs: 1000, Rate: 100, Instances: 1, Stalled: 50, Desc: "large, but 50 of the 1,000 subscribers stall: they connect, then never read (4 KiB receive\n" +
		"          buffer, 1460-byte MSS) and never reconnect; figures are the 950 others', plus how many stalled ones the server closed"},
	{Name: "huge", Subs: 10000, Rate: 2, Instances: 1, Desc: "10,000 subscribers × 2 msg/s"},
	{Name: "idle", Subs: 10000, Rate: 0, Instances: 1, Desc: "10,000 subscribers connected, no messages (memory)"},
	{Name: "multi", Subs: 1000, Rate: 100, Instances: 3, Desc: "3 instances sharing one Redis, 1,000 subscribers spread over them × 100 msg/s"},
	{Name: "rooms", Subs: 10000, Rooms: 100, Rate: 200, Instances: 1, ServerArgs: roomArgs, MaxP99Ms: 50, CPUAtMostOf: "large",
		Desc: "100 rooms × 100 subscribers (each its own user, streaming only its room) × 200 msg/s spread over\n" +
			"          the rooms; targets: 0 loss, p99 ≤ 50 ms, server CPU per delivery ≤ large's"},
	{Name: "spread", Subs: 10000, Rooms: 5000, Rate: 500, Instances: 1, ServerArgs: roomArgs, MaxP99Ms: 50,
		Desc: "5,000 rooms × 2 subscribers × 500 msg/s spread over the rooms; targets: 0 loss, p99 ≤ 50 ms"},
	{Name: "storm", Subs: 10000, Rooms: 100, Rate: 100, Instances: 1, Storm: true, ServerArgs: roomArgs, MaxP99Ms: 250, OnlineWithin: 5 * time.Second,
		Desc: "10,000 subscribers over 100 rooms (logged in and joined before) open their streams evenly within\n" +
			"          the sending time (10 s) while 100 msg/s are posted to the rooms; then each room's online list is\n" +
			"          checked (GET /r/{room}/online, and one observer stream per room); targets: all connected,\n" +
			"          lists correct ≤ 5 s after the last connect, p99 ≤ 250 ms (messages expected only on streams\n" +
			"          already live, i.e. whose room's presence event had been read, when their POST started)"},
}

// scenarioNames lists the scenario names for messages: "small, medium, …".
func scenarioNames() string {
	names := make([]string, len(scenarios))
	for i, s := range scenarios {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

// slowTarget is the goal for slow's healthy p99 over large's p99: stalled
// subscribers should cost the others little.
const slowTarget = 1.5

// config is the parsed command line.
type config struct {
	scenarios      []scenario
	duration       time.Duration
	smoke          bool
	check          bool
	runs           int
	jsonPath       string
	taskset        bool
	redisURL       string
	targets        []string
	serverBin      string
	root           string
	serverArgs     []string
	subs           int
	stalled        int
	rooms          int
	onlineTimeout  time.Duration
	rate           float64
	instances      int
	senders        int
	subUsers       int
	deadline       time.Duration
	drain          time.Duration
	connectTimeout time.Duration
	postTimeout    time.Duration
	settle         time.Duration
	connectConc    int
	loginConc      int
	maxInflight    int
	maxReconnects  int
	readBuf        int
	logDir         string
	quiet          bool
	cpuProfile     string
}

// Bounds on flag values: every loop of the bench is bounded by them.
const (
	maxSubs     = 100_000
	maxRate     = 100_000
	maxMsgs     = 10_000_000
	maxRuns     = 20
	maxDuration = time.Hour
)

func parseFlags(args []string, stdout io.Writer) (*config, error) {
	fs := flag.NewFlagSet("chatbench", flag.ContinueOnError)
	fs.SetOutput(stdout)
	c := &config{}
	var scen, targets, serverArgs string
	fs.StringVar(&scen, "scenario", "small", "scenarios to run: a comma list of "+scenarioNames()+", or all")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "sending time per scenario (messages M = rate × duration)")
	fs.BoolVar(&c.smoke, "smoke", false, "smoke test: the small scenario for 2s (unless -duration is given), fail (exit 1) on any loss, duplicate, order error or failed POST; no timing assertions")
	fs.BoolVar(&c.check, "check", false, "like -smoke's assertions, for any scenario: exit 1 on loss, duplicates, order errors or failed POSTs")
	fs.IntVar(&c.runs, "runs", 1, "runs of each scenario (fresh processes each time); with more than one, a median row per scenario (error counts: worst run)")
	fs.StringVar(&c.jsonPath, "json", "", "write all results as JSON to this file")
	fs.BoolVar(&c.taskset, "taskset", false, "pin redis-server and the chat servers to CPU 0 (taskset) and the generator to CPU 1 (sched_setaffinity)")
	fs.StringVar(&c.redisURL, "redis", "", "use this Redis (loopback redis://, rediss:// or unix://) instead of starting a redis-server per run")
	fs.StringVar(&targets, "target", "", "comma list of running chat servers (loopback http://host:port) to load instead of starting them; subscribers and senders are spread over them")
	fs.StringVar(&c.serverBin, "server-bin", "", "prebuilt chat server binary (default: go build of the module root into a temp dir)")
	fs.StringVar(&c.root, "root", "", "module root of the chat server to build (default: found by walking up from the current directory)")
	fs.StringVar(&serverArgs, "server-args", "", "extra space-separated flags for each started server, after -addr -redis -rate-posts 0 -rate-logins 0 -max-streams 20000 -streams-per-session 0 -streams-per-addr 0 -conns-per-addr 0 -rate-posts-addr 0 -rate-posts-room 0 -new-name-posts 0 (and for rooms, spread and storm -rate-joins 0)")
	fs.IntVar(&c.subs, "subs", 0, "override the scenario's subscriber count N")
	fs.IntVar(&c.stalled, "stalled", -1, "override the stalled subscriber count of scenarios that have some (slow: 50); at most N")
	fs.IntVar(&c.rooms, "rooms", 0, "override the room count of scenarios with rooms (rooms, spread, storm); at most N")
	fs.DurationVar(&c.onlineTimeout, "online-timeout", 30*time.Second, "storm: how long after the last connect the online lists may take to become correct")
	fs.Float64Var(&c.rate, "rate", -1, "override the scenario's message rate R per second (0: idle; -1: the scenario's own)")
	fs.IntVar(&c.instances, "instances", 0, "override the scenario's server instance count K (ignored with -target)")
	fs.IntVar(&c.senders, "senders", 10, "sender users S; message i is posted by sender i mod S (each sender on instance s mod K)")
	fs.IntVar(&c.subUsers, "sub-users", 100, "distinct users the subscribers log in as (rounded up to a multiple of the instance count; subscriber j uses user j mod U); in scenarios with rooms every subscriber is its own user")
	fs.DurationVar(&c.deadline, "deadline", 5*time.Minute, "hard time limit for one run of one scenario")
	fs.DurationVar(&c.drain, "drain", 10*time.Second, "after the last POST is answered, wait at most this long for deliveries to finish")
	fs.DurationVar(&c.connectTimeout, "connect-timeout", 60*time.Second, "time allowed for all subscribers to connect (first retry: line read)")
	fs.DurationVar(&c.postTimeout, "post-timeout", 10*time.Second, "timeout of one POST /post")
	fs.DurationVar(&c.settle, "settle", time.Second, "pause after all subscribers connected, before measuring RSS and sending")
	fs.IntVar(&c.connectConc, "connect-concurrency", 128, "subscribers connecting at the same time")
	fs.IntVar(&c.loginConc, "login-concurrency", 32, "logins in flight at the same time")
	fs.IntVar(&c.maxInflight, "max-inflight", 4096, "POSTs in flight at most; when reached the sender waits (reported as send lag)")
	fs.IntVar(&c.maxReconnects, "max-reconnects", 10, "reconnects (with last_event_id) allowed per subscriber")
	fs.IntVar(&c.readBuf, "read-buffer", 2048, "bytes of each subscriber's read buffer")
	fs.StringVar(&c.logDir, "logdir", "", "keep redis and server logs in this directory (default: a temp dir, removed at exit)")
	fs.BoolVar(&c.quiet, "q", false, "no progress messages on stderr")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the generator's own CPU profile to this file")
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: chatbench [flags]\n\nLoad generator for the chat server. Scenarios:\n")
		for _, s := range scenarios {
			fmt.Fprintf(stdout, "  %-7s %s\n", s.Name, s.Desc)
		}
		fmt.Fprintf(stdout, "\nOutput: one table row per run (and a median row per scenario with -runs > 1):\n"+
			"  loss/dups/order are (subscriber, message) pairs; x-room: messages that reached a subscriber of\n"+
			"  another room; post p99: POST start → 204; p50..max: POST start → event read;\n"+
			"  deliv/s: deliveries / (first POST → last delivery); srv/redis/gen µs/dl: CPU time of the\n"+
			"  servers, redis-server and the generator per delivery; RSS KiB/sub: server RSS growth\n"+
			"  from before the subscribers connected to after, per subscriber; stalled/closed: stalled\n"+
			"  subscribers, and how many of them the server had closed by the end of the run (found by\n"+
			"  draining them then); they are not in the other columns.\n"+
			"  When large and slow both ran, a last line compares slow's p99 with large's (target ≤ %.1f×).\n\nFlags:\n", slowTarget)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	durationSet := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "duration" {
			durationSet = true
		}
	})
	if c.smoke {
		c.check = true
		if !durationSet {
			c.duration = 2 * time.Second
		}
		if scen == "small" || scen == "" {
			scen = "small"
		}
	}
	for _, name := range strings.Split(scen, ",") {
		name = strings.TrimSpace(name)
		if name == "all" {
			c.scenarios = append(c.scenarios, scenarios...)
			continue
		}
		found := false
		for _, s := range scenarios {
			if s.Name == name {
				c.scenarios = append(c.scenarios, s)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown scenario %q (want %s, or all)", name, scenarioNames())
		}
	}
	if targets != "" {
		for _, t := range strings.Split(targets, ",") {
			u, err := checkTarget(strings.TrimSpace(t))
			if err != nil {
				return nil, err
			}
			c.targets = append(c.targets, u)
		}
	}
	if c.redisURL != "" {
		if _, err := checkRedisURL(c.redisURL); err != nil {
			return nil, err
		}
	}
	c.serverArgs = strings.Fields(serverArgs)
	switch {
	case c.duration <= 0 || c.duration > maxDuration:
		return nil, fmt.Errorf("-duration must be in (0, %v]", maxDuration)
	case c.runs < 1 || c.runs > maxRuns:
		return nil, fmt.Errorf("-runs must be in [1, %d]", maxRuns)
	case c.subs < 0 || c.subs > maxSubs:
		return nil, fmt.Errorf("-subs must be in [0, %d]", maxSubs)
	case c.stalled < -1 || c.stalled > maxSubs:
		return nil, fmt.Errorf("-stalled must be in [0, %d]", maxSubs)
	case c.rooms < 0 || c.rooms > maxSubs:
		return nil, fmt.Errorf("-rooms must be in [0, %d]", maxSubs)
	case c.onlineTimeout <= 0 || c.onlineTimeout > maxDuration:
		return nil, fmt.Errorf("-online-timeout must be in (0, %v]", maxDuration)
	case c.rate > maxRate || (c.rate < 0 && c.rate != -1):
		return nil, fmt.Errorf("-rate must be in [0, %d]", maxRate)
	case c.instances < 0 || c.instances > 64:
		return nil, errors.New("-instances must be in [0, 64]")
	case c.senders < 1 || c.senders > 10000:
		return nil, errors.New("-senders must be in [1, 10000]")
	case c.subUsers < 1 || c.subUsers > maxSubs:
		return nil, fmt.Errorf("-sub-users must be in [1, %d]", maxSubs)
	case c.deadline <= 0 || c.drain < 0 || c.connectTimeout <= 0 || c.postTimeout <= 0 || c.settle < 0:
		return nil, errors.New("-deadline, -connect-timeout and -post-timeout must be positive, -drain and -settle not negative")
	case c.connectConc < 1 || c.loginConc < 1 || c.maxInflight < 1 || c.maxReconnects < 0:
		return nil, errors.New("concurrency limits must be at least 1, -max-reconnects at least 0")
	case c.readBuf < 256 || c.readBuf > 1<<20:
		return nil, errors.New("-read-buffer must be in [256, 1MiB]")
	}
	if c.taskset && runtime.NumCPU() < 2 {
		return nil, errors.New("-taskset needs at least 2 CPUs")
	}
	return c, nil
}

// shape applies the overrides to a scenario.
func (c *config) shape(s scenario) scenario {
	if c.subs > 0 {
		s.Subs = c.subs
	}
	if c.rate >= 0 {
		s.Rate = c.rate
	}
	if c.instances > 0 {
		s.Instances = c.instances
	}
	if len(c.targets) > 0 {
		s.Instances = len(c.targets)
	}
	if c.stalled >= 0 && s.Stalled > 0 {
		s.Stalled = c.stalled
	}
	s.Stalled = min(s.Stalled, s.Subs)
	if c.rooms > 0 && s.Rooms > 0 {
		s.Rooms = c.rooms
	}
	s.Rooms = min(s.Rooms, s.Subs)
	return s
}

// msgs is M for a scenario: rate × duration, rounded.
func (c *config) msgs(s scenario) int {
	return int(math.Round(s.Rate * c.duration.Seconds()))
}

// report is what -json writes.
type report struct {
	Started   time.Time   `json:"started"`
	GoVersion string      `json:"go_version"`
	NumCPU    int         `json:"num_cpu"`
	Taskset   bool        `json:"taskset"`
	Duration  string      `json:"duration"`
	Runs      int         `json:"runs"`
	Results   []*result   `json:"results"`
	Medians   []*result   `json:"medians,omitempty"`
	Errors    []string    `json:"errors,omitempty"`
	Scenarios []scenarioJ `json:"scenarios"`
	// SlowVsLarge is set when large and slow both ran.
	SlowVsLarge *slowRatio `json:"slow_vs_large,omitempty"`
	// Targets are the goals of the scenarios that ran and have some.
	Targets []target `json:"targets,omitempty"`
}

type scenarioJ struct {
	Name      string  `json:"name"`
	Subs      int     `json:"subs"`
	Stalled   int     `json:"stalled,omitempty"`
	Rooms     int     `json:"rooms,omitempty"`
	Storm     bool    `json:"storm,omitempty"`
	Rate      float64 `json:"rate"`
	Instances int     `json:"instances"`
	Msgs      int     `json:"msgs"`
}

// slowRatio compares the healthy subscribers' p99 in slow with large's p99
// (medians of the runs).
type slowRatio struct {
	LargeP99Ms float64 `json:"large_p99_ms"`
	SlowP99Ms  float64 `json:"slow_p99_ms"`
	Ratio      float64 `json:"ratio"`
	Target     float64 `json:"target"`
	Met        bool    `json:"met"`
}

// compareSlow returns slow's p99 over large's, nil unless both ran.
func compareSlow(medians []*result) *slowRatio {
	var large, slow *result
	for _, m := range medians {
		switch m.Scenario {
		case "large":
			large = m
		case "slow":
			slow = m
		}
	}
	if large == nil || slow == nil || large.P99Ms <= 0 {
		return nil
	}
	r := &slowRatio{LargeP99Ms: large.P99Ms, SlowP99Ms: slow.P99Ms, Ratio: slow.P99Ms / large.P99Ms, Target: slowTarget}
	r.Met = r.Ratio <= slowTarget
	return r
}

// target is one goal of a scenario, checked on its median.
type target struct {
	Scenario string  `json:"scenario"`
	What     string  `json:"what"`
	Value    float64 `json:"value"`
	Limit    float64 `json:"limit"` // Value ≤ Limit is met
	Met      bool    `json:"met"`
}

// checkTargets checks the goals of every scenario in medians that has
// some (see scenario): 0 loss (and nothing in another room), p99, server
// CPU per delivery against another scenario that ran too, and for a storm
// every subscriber connected and the online lists correct in time.
func checkTargets(medians []*result) []target {
	byName := map[string]*result{}
	for _, m := range medians {
		byName[m.Scenario] = m
	}
	var out []target
	add := func(m *result, what string, v, limit float64) {
		out = append(out, target{m.Scenario, what, v, limit, v <= limit})
	}
	for _, m := range medians {
		i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.Name == m.Scenario })
		if i < 0 {
			continue
		}
		s := scenarios[i]
		if s.MaxP99Ms == 0 && s.CPUAtMostOf == "" && s.OnlineWithin == 0 {
			continue
		}
		add(m, "lost deliveries", float64(m.Loss), 0)
		add(m, "deliveries in another room", float64(m.WrongRoom), 0)
		if s.MaxP99Ms > 0 {
			add(m, "p99 ms", m.P99Ms, s.MaxP99Ms)
		}
		if o := byName[s.CPUAtMostOf]; o != nil && o.Deliveries > 0 {
			add(m, "server µs/delivery (limit: "+o.Scenario+"'s)", m.ServerUsPerD, o.ServerUsPerD)
		}
		if sr := m.Storm; sr != nil && s.OnlineWithin > 0 {
			add(m, "subscribers not connected", float64(m.Subs-sr.Connected), 0)
			// A room whose list was never correct misses the time too.
			add(m, "s to correct online lists (GET)", sr.PollSec, s.OnlineWithin.Seconds())
			out[len(out)-1].Met = out[len(out)-1].Met && sr.PollWrong == 0
			add(m, "rooms whose list was never correct (GET)", float64(sr.PollWrong), 0)
			add(m, "s to correct online lists (observers)", sr.EventsSec, s.OnlineWithin.Seconds())
			out[len(out)-1].Met = out[len(out)-1].Met && sr.EventsWrong == 0
			add(m, "rooms whose list was never correct (observers)", float64(sr.EventsWrong), 0)
		}
	}
	return out
}

// writeTargets prints one line per target.
func writeTargets(w io.Writer, ts []target) {
	fmt.Fprintln(w, "Targets (medians):")
	for _, t := range ts {
		verdict := "met"
		if !t.Met {
			verdict = "MISSED"
		}
		fmt.Fprintf(w, "  %-7s %s: %s (≤ %s) %s\n", t.Scenario, t.What, fmtFloat(t.Value), fmtFloat(t.Limit), verdict)
	}
}

// run is the whole command: it parses args, runs every scenario, prints
// the table on stdout (progress on stderr) and returns an error for bad
// flags, a failed run, or (with -check/-smoke) a failed assertion.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := parseFlags(args, stdout)
	if err != nil {
		return err
	}
	logw := io.Writer(os.Stderr)
	if cfg.quiet {
		logw = io.Discard
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(logw, "chatbench: "+format+"\n", a...)
	}

	limit, err := raiseNoFile()
	if err != nil {
		logf("cannot raise RLIMIT_NOFILE: %v", err)
	}
	if cfg.taskset {
		restore, err := pinSelf(1)
		if err != nil {
			return fmt.Errorf("pin generator to CPU 1: %w", err)
		}
		defer restore()
		logf("generator pinned to CPU 1, servers and redis to CPU 0")
	}

	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	b, err := newBench(cfg, logf)
	if err != nil {
		return err
	}
	defer b.close()

	rep := &report{Started: time.Now(), GoVersion: runtime.Version(), NumCPU: runtime.NumCPU(),
		Taskset: cfg.taskset, Duration: cfg.duration.String(), Runs: cfg.runs}
	var medians []*result
	var problems []string
	for _, s0 := range cfg.scenarios {
		s := cfg.shape(s0)
		rep.Scenarios = append(rep.Scenarios, scenarioJ{s.Name, s.Subs, s.Stalled, s.Rooms, s.Storm, s.Rate, s.Instances, cfg.msgs(s)})
		if need := uint64(s.Subs) + 256; limit > 0 && need > limit {
			logf("warning: %s needs about %d file descriptors, RLIMIT_NOFILE is %d", s.Name, need, limit)
		}
		var runs []*result
		for i := 1; i <= cfg.runs; i++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			logf("scenario %s run %d/%d: %d subscribers (%d stalled) in %d room(s) × %g msg/s for %v on %d instance(s)",
				s.Name, i, cfg.runs, s.Subs, s.Stalled, max(s.Rooms, 1), s.Rate, cfg.duration, s.Instances)
			r, err := b.runScenario(ctx, s, i)
			if err != nil {
				msg := fmt.Sprintf("%s run %d: %v", s.Name, i, err)
				rep.Errors = append(rep.Errors, msg)
				problems = append(problems, msg)
				logf("%s", msg)
				if ctx.Err() != nil {
					break
				}
				continue
			}
			rep.Results = append(rep.Results, r)
			runs = append(runs, r)
			_ = writeTable(stdout, []*result{r})
			writeStorms(stdout, []*result{r})
			for _, n := range r.Notes {
				fmt.Fprintf(stdout, "  note: %s\n", n)
			}
			fmt.Fprintln(stdout)
			if cfg.check {
				for _, p := range r.problems() {
					problems = append(problems, fmt.Sprintf("%s run %d: %s", s.Name, i, p))
				}
			}
		}
		if len(runs) > 0 {
			medians = append(medians, mergeRuns(runs))
		}
	}
	if cfg.runs > 1 {
		rep.Medians = medians
	}
	if len(medians) > 1 || (len(medians) > 0 && cfg.runs > 1) {
		if cfg.runs > 1 {
			fmt.Fprintf(stdout, "Medians of %d runs (error counts: worst run):\n", cfg.runs)
		} else {
			fmt.Fprintln(stdout, "Summary:")
		}
		if err := writeTable(stdout, medians); err != nil {
			return err
		}
		if cfg.runs > 1 {
			writeStorms(stdout, medians)
		}
	}
	if r := compareSlow(medians); r != nil {
		rep.SlowVsLarge = r
		verdict := "met"
		if !r.Met {
			verdict = "missed"
		}
		fmt.Fprintf(stdout, "slow/large p99: %.2f× (slow %s ms, healthy subscribers only; large %s ms; target ≤ %.1f×: %s)\n",
			r.Ratio, fmtFloat(r.SlowP99Ms), fmtFloat(r.LargeP99Ms), r.Target, verdict)
	}
	if ts := checkTargets(medians); len(ts) > 0 {
		rep.Targets = ts
		writeTargets(stdout, ts)
	}
	if cfg.jsonPath != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(cfg.jsonPath, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("write -json: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d problem(s):\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	return nil
}
