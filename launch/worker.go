package launch

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/torusml/torus/parallel"
)

// WorkerConfig is one worker process's place in a job and how it finds the
// others: from the launcher's handshake on its stdin and stdout (torus train),
// or through the job's memberlist cluster (torus launch, Rdzv set).
type WorkerConfig struct {
	Rank   int
	Layout parallel.Topology // the job's layout; its Workers is the world
	// Listen is the address to serve the other workers on; "" is 127.0.0.1:0,
	// or with Rdzv the address of the route to the rendezvous, port 0.
	Listen string
	// Security: the cluster secret (the gossip key, the gRPC token and the TLS
	// CA), a site's TLS files, or plaintext on loopback (see Security).
	Security Security

	// The handshake with a local launcher (Rdzv empty).
	Stdin  io.Reader
	Stdout io.Writer

	// Membership across machines.
	Rdzv        string   // HOST:PORT of the rendezvous (rank 0 serves it)
	Job         string   // only workers of one job join each other
	Node        int      // this worker's node rank
	Attempt     int      // the job's restart count: workers of one attempt meet only each other
	Bind        string   // the address gossip listens on ("": the route to Rdzv)
	Devices     []string // what this worker computes on, in its membership metadata
	JoinTimeout time.Duration
	// Resume is rank 0's choice of checkpoint (called on rank 0 only, before it
	// joins); every rank takes that choice. Nil: From stands.
	Resume func() (string, error)

	From string    // the checkpoint to resume from, when the launcher resolved it
	Log  io.Writer // "cluster formed" and the like
}

// Worker is a worker's connections to the rest of its job.
type Worker struct {
	T    parallel.Transport
	Mesh parallel.Mesh
	From string // the checkpoint every rank resumes from, or ""

	cl     *memberCluster // nil without a rendezvous
	cancel context.CancelCauseFunc
}

// JoinWorker brings a worker up: it listens, meets every other rank, connects
// the gRPC ring and builds the Mesh. The returned context is cancelled, with
// the cause, when the cluster declares a member dead.
func JoinWorker(ctx context.Context, c WorkerConfig) (*Worker, context.Context, error) {
	world := c.Layout.Workers
	mesh, err := c.Layout.Mesh()
	if err != nil {
		return nil, ctx, err
	}
	if c.Rank < 0 || c.Rank >= world {
		return nil, ctx, fmt.Errorf("worker: rank %d outside [0, %d)", c.Rank, world)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	w := &Worker{Mesh: mesh, From: c.From, cancel: cancel}
	fail := func(err error) (*Worker, context.Context, error) {
		w.Close()
		return nil, ctx, fmt.Errorf("worker rank %d: %w", c.Rank, err)
	}
	listen := c.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
		if c.Rdzv != "" { // the interface of the route to the rendezvous, not every one
			ip, err := RouteIP(c.Rdzv)
			if err != nil {
				return fail(err)
			}
			listen = net.JoinHostPort(ip, "0")
		}
	}
	if err := c.Security.Check(c.Rdzv, c.Bind, listen); err != nil {
		return fail(err)
	}
	id, err := c.Security.TLS() // before listening: a bad certificate file fails at once
	if err != nil {
		return fail(err)
	}
	gossipKey, token := c.Security.keys()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fail(fmt.Errorf("listen on %s: %w", listen, err))
	}
	var addrs []string
	if c.Rdzv == "" { // started by torus train: the launcher hands out the addresses
		fmt.Fprintf(c.Stdout, "%s%s\n", ListenPrefix, ln.Addr())
		peers, err := readPeers(c.Stdin, world)
		if err != nil {
			ln.Close()
			return fail(err)
		}
		addrs = peers.Addrs
	} else {
		if c.Rank == 0 && c.Resume != nil { // rank 0 picks the checkpoint; the others take its choice
			if w.From, err = c.Resume(); err != nil {
				ln.Close()
				return fail(err)
			}
		}
		if w.cl, addrs, err = join(ctx, cancel, c, gossipKey, ln.Addr().String(), w.From); err != nil {
			ln.Close()
			return fail(err)
		}
		w.From = w.cl.resume
	}
	if c.Security.Insecure { // every rank checked its own; this names the one that is not loopback
		if err := c.Security.Check(addrs...); err != nil {
			ln.Close()
			return fail(err)
		}
	}
	t, err := parallel.NewGRPC(ctx, parallel.GRPCConfig{Rank: c.Rank, Addrs: addrs, Listener: ln, Token: token, TLS: id})
	if err != nil {
		return fail(fmt.Errorf("connect: %w", err))
	}
	w.T = t
	return w, ctx, nil
}

// Finish waits, after a worker's part of the job ended well, until every rank
// is done: leaving the cluster earlier reads to the others as a loss.
func (w *Worker) Finish(ctx context.Context) error {
	if w.cl == nil {
		return nil
	}
	return w.cl.Finish(ctx, 30*time.Minute)
}

// Close closes the ring, leaves the cluster and cancels the worker's context.
func (w *Worker) Close() {
	defer w.cancel(nil)
	if w.T != nil {
		w.T.Close()
	}
	if w.cl != nil {
		w.cl.Close()
	}
}

// memberCluster is a worker's membership once the world has formed, with the
// checkpoint rank 0 chose.
type memberCluster struct {
	*Cluster
	resume string
}

// join joins the job's memberlist cluster and waits for every rank; it returns
// their addresses in rank (ring) order, and calls cancel with the cause when
// the failure detector later declares a member dead.
func join(ctx context.Context, cancel context.CancelCauseFunc, c WorkerConfig, gossipKey []byte, addr, resume string) (*memberCluster, []string, error) {
	devices := c.Devices
	if len(devices) == 0 {
		devices = []string{"cpu"}
	}
	world := c.Layout.Workers
	cl, err := JoinCluster(ctx, ClusterConfig{
		Self:        Member{Job: c.Job, Attempt: c.Attempt, Rank: c.Rank, Node: c.Node, Addr: addr, Devices: devices, Resume: resume},
		World:       world,
		Rdzv:        c.Rdzv,
		BindIP:      c.Bind,
		Key:         gossipKey,
		JoinTimeout: c.JoinTimeout,
	})
	if err != nil {
		return nil, nil, err
	}
	start := time.Now()
	members, err := cl.Wait(ctx)
	if err != nil {
		cl.Close()
		return nil, nil, err
	}
	addrs := make([]string, len(members))
	for i, m := range members {
		addrs[i] = m.Addr
	}
	if c.Rank == 0 && c.Log != nil {
		fmt.Fprintf(c.Log, "torus: cluster formed in %s: %d workers, ring %s\n", time.Since(start).Round(time.Millisecond), world, strings.Join(addrs, " -> "))
	}
	go func() {
		select {
		case m := <-cl.Lost():
			cancel(fmt.Errorf("cluster: rank %d (%s, node %d) is dead", m.Rank, m.Addr, m.Node))
		case <-ctx.Done():
		}
	}()
	return &memberCluster{Cluster: cl, resume: members[0].Resume}, addrs, nil
}

// readPeers reads the launcher's line of addresses (see the package comment).
func readPeers(in io.Reader, world int) (Peers, error) {
	type result struct {
		p   Peers
		err error
	}
	got := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(in).ReadBytes('\n')
		if err != nil {
			got <- result{err: fmt.Errorf("read peer addresses from the launcher: %w", err)}
			return
		}
		var p Peers
		if err := json.Unmarshal(line, &p); err != nil {
			got <- result{err: fmt.Errorf("peer addresses from the launcher: %w", err)}
			return
		}
		got <- result{p: p}
	}()
	select {
	case r := <-got:
		if r.err == nil && len(r.p.Addrs) != world {
			r.err = fmt.Errorf("launcher sent %d addresses for %d workers", len(r.p.Addrs), world)
		}
		return r.p, r.err
	case <-time.After(5 * time.Minute):
		return Peers{}, fmt.Errorf("no peer addresses from the launcher within 5 minutes")
	}
}
