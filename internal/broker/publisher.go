package broker

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// publisher runs the publish script for concurrent POSTs, batching those
// that arrive while others are in flight into one pipeline: when idle a
// publish goes out at once (no added latency), when busy many share one
// round trip and one write to Redis.
type publisher struct {
	rdb     redis.UniversalClient
	queue   chan *publishReq
	timeout time.Duration // one batch, Redis round trip included
	stopped chan struct{} // closed when run has returned: nobody serves the queue any more
}

type publishReq struct {
	keys []string
	args []any
	id   string
	err  error
	done chan struct{} // closed when id and err are set
}

const (
	publishWorkers  = 4   // batches in flight at once
	maxPublishBatch = 128 // publishes in one pipeline
)

var errPublisherStopped = errors.New("publisher stopped")

func newPublisher(rdb redis.UniversalClient, timeout time.Duration) *publisher {
	return &publisher{rdb: rdb, queue: make(chan *publishReq, 4*maxPublishBatch), timeout: timeout, stopped: make(chan struct{})}
}

// run serves publishes until ctx ends, then fails what is still queued.
// Callers stop publishing before ctx ends (the HTTP server has shut down).
func (p *publisher) run(ctx context.Context) {
	defer close(p.stopped)
	done := make(chan struct{})
	for range publishWorkers {
		go func() {
			defer func() { done <- struct{}{} }()
			p.work(ctx)
		}()
	}
	for range publishWorkers {
		<-done
	}
	for {
		select {
		case r := <-p.queue:
			r.err = errPublisherStopped
			close(r.done)
		default:
			return
		}
	}
}

func (p *publisher) work(ctx context.Context) {
	batch := make([]*publishReq, 0, maxPublishBatch)
	cmds := make([]*redis.Cmd, 0, maxPublishBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-p.queue:
			batch = append(batch[:0], r)
		}
	fill:
		for len(batch) < maxPublishBatch {
			select {
			case r := <-p.queue:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		cmds = p.send(batch, cmds[:0])
		clear(batch)
	}
}

// send runs one batch and answers every request in it.
func (p *publisher) send(batch []*publishReq, cmds []*redis.Cmd) []*redis.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	if len(batch) == 1 {
		r := batch[0]
		r.id, r.err = publishScript.Run(ctx, p.rdb, r.keys, r.args...).Text()
		close(r.done)
		return cmds
	}
	p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, r := range batch {
			cmds = append(cmds, publishScript.EvalSha(ctx, pipe, r.keys, r.args...))
		}
		return nil
	})
	for i, r := range batch {
		r.id, r.err = cmds[i].Text()
		if r.err != nil && redis.HasErrorPrefix(r.err, "NOSCRIPT") {
			// Redis restarted or was flushed: Run loads the script again.
			r.id, r.err = publishScript.Run(ctx, p.rdb, r.keys, r.args...).Text()
		}
		close(r.done)
	}
	clear(cmds)
	return cmds
}

// publish runs the publish script for keys and args and returns its answer.
// Once queued it returns within the publisher's timeout; after run has
// ended it returns errPublisherStopped at once. It does not give up when ctx
// ends while the script may be running: the caller must learn the outcome.
func (p *publisher) publish(ctx context.Context, keys []string, args []any) (string, error) {
	r := &publishReq{keys: keys, args: args, done: make(chan struct{})}
	select {
	case p.queue <- r:
	case <-p.stopped:
		return "", errPublisherStopped
	case <-ctx.Done():
		return "", ctx.Err()
	}
	select {
	case <-r.done:
		return r.id, r.err
	case <-p.stopped:
		// run failed everything it found queued; r may have been queued
		// after that, and then nobody will answer it.
		select {
		case <-r.done:
			return r.id, r.err
		default:
			return "", errPublisherStopped
		}
	}
}
