package launch

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Finish ends this worker's part of a job that went well: it tells the others
// it is done, then waits until every rank of the world is done or gone, so
// that no worker leaves while another still works (a member gone before it
// was done is a loss, see Lost). Then Close. Cancelling ctx, or timeout,
// ends the wait early; leaving then is still safe for this worker.
func (c *Cluster) Finish(ctx context.Context, timeout time.Duration) error {
	c.finishing.Store(true)
	self := c.cfg.Self
	self.Done = true
	meta, err := json.Marshal(self)
	if err != nil {
		return err
	}
	c.meta.set(meta)
	if err := c.ml.UpdateNode(5 * time.Second); err != nil && !c.othersDone(self.Rank) {
		// (When every other member was done already, they may have seen this
		// rank's news and left before the broadcast's last retransmission: it
		// then has no one to go to, which is no failure.)
		return fmt.Errorf("cluster: rank %d: announce done: %w", self.Rank, err)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if c.allDone() {
			return nil
		}
		select {
		case <-c.changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("cluster: rank %d: the others were not done within %s", self.Rank, timeout)
		}
	}
}

// allDone: every member of this job and attempt still here says it is done.
func (c *Cluster) allDone() bool { return c.othersDone(-1) }

// othersDone: every member of this job and attempt still here, but rank skip,
// says it is done.
func (c *Cluster) othersDone(skip int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range c.view {
		if v.err == nil && c.same(v.m) && !v.m.Done && v.m.Rank != skip {
			return false
		}
	}
	return true
}
