package launch

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Member is one worker as the cluster knows it: what it carries in its
// memberlist node metadata (at most memberlist.MetaMaxSize bytes as JSON).
type Member struct {
	Job string `json:"job"`
	// Attempt counts the job's restarts: the workers of one attempt meet only
	// each other, never a survivor of the one before.
	Attempt int      `json:"attempt"`
	Rank    int      `json:"rank"`
	Node    int      `json:"node"`
	Addr    string   `json:"grpc"` // where its gRPC transport listens
	Devices []string `json:"devices,omitempty"`
	// Resume is, in rank 0's metadata, the checkpoint every rank resumes from
	// ("" for a fresh start): rank 0 decides, so all ranks agree.
	Resume string `json:"resume,omitempty"`
	// Done: this worker's part of the job is over (Finish); its leaving next
	// is not a loss.
	Done bool `json:"done,omitempty"`
}

// same says whether m is of this worker's job and attempt.
func (c *Cluster) same(m Member) bool {
	return m.Job == c.cfg.Self.Job && m.Attempt == c.cfg.Self.Attempt
}

// ClusterConfig is one worker's membership. Zero fields take the defaults
// written beside them.
type ClusterConfig struct {
	Self  Member // this worker; Self.Addr must already listen
	World int    // how many workers the job has
	Rdzv  string // HOST:PORT of the seed; the worker of rank 0 serves it
	// BindIP is the address gossip listens on; default the address of this
	// machine's route to the rendezvous host (not every interface).
	BindIP string
	// Key, when set, encrypts and authenticates every gossip message
	// (AES-GCM; 16, 24 or 32 bytes): a member without it cannot join.
	Key         []byte
	JoinTimeout time.Duration // how long to wait for the seed and for the world; default 5 min
	Logger      *slog.Logger  // default slog.Default(); memberlist's warnings and errors go here too
}

// Cluster is this worker's view of the job's membership (memberlist).
// Its methods are safe for concurrent use.
type Cluster struct {
	cfg       ClusterConfig
	ml        *memberlist.Memberlist
	log       *slog.Logger
	changed   chan struct{} // a member joined, left or changed; buffered, 1
	lost      chan Member   // a member of the formed world is gone; buffered
	closing   atomic.Bool   // Close began: memberlist's errors from then on are its shutdown's
	finishing atomic.Bool   // Finish began: members leaving are no longer losses
	meta      *metaDelegate
	mu        sync.Mutex
	formed    bool
	view      map[string]viewed // by memberlist node name
}

// RouteIP is the local address this machine would use to reach addr
// (HOST:PORT): the interface of the route to it. No packet is sent.
func RouteIP(addr string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", fmt.Errorf("route to %s: %w", addr, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String(), nil
}

// JoinCluster starts this worker's gossip and joins the job: the worker of
// rank 0 serves the seed on the rendezvous address (which must be one of its
// machine's), every other one joins it, retrying until JoinTimeout.
func JoinCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	if cfg.JoinTimeout == 0 {
		cfg.JoinTimeout = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	self := cfg.Self
	if self.Rank < 0 || self.Rank >= cfg.World {
		return nil, fmt.Errorf("cluster: rank %d is not in [0, world %d)", self.Rank, cfg.World)
	}
	host, portStr, err := net.SplitHostPort(cfg.Rdzv)
	if err != nil {
		return nil, fmt.Errorf("cluster: rendezvous %q: %w", cfg.Rdzv, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("cluster: rendezvous %q: port %q is not a number", cfg.Rdzv, portStr)
	}
	if cfg.BindIP == "" {
		if cfg.BindIP, err = RouteIP(cfg.Rdzv); err != nil {
			return nil, fmt.Errorf("cluster: listening address: %w", err)
		}
	}
	meta, err := json.Marshal(self)
	if err != nil {
		return nil, err
	}
	if len(meta) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("cluster: rank %d's metadata is %d bytes, more than memberlist's %d", self.Rank, len(meta), memberlist.MetaMaxSize)
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger, changed: make(chan struct{}, 1), lost: make(chan Member, cfg.World), view: map[string]viewed{}}
	mc := memberlist.DefaultLANConfig()
	mc.Name = fmt.Sprintf("%s/rank-%d", self.Job, self.Rank) // stable: a restarted worker comes back as itself
	mc.Label = fmt.Sprintf("%s#%d", self.Job, self.Attempt)  // another job's or attempt's packets are dropped
	mc.BindAddr, mc.BindPort = cfg.BindIP, 0
	if self.Rank == 0 {
		if err := checkLocal(host); err != nil {
			return nil, fmt.Errorf("cluster: rank 0 serves the rendezvous %s: %w", cfg.Rdzv, err)
		}
		mc.BindPort = port
	}
	mc.AdvertisePort = mc.BindPort
	c.meta = &metaDelegate{b: meta}
	mc.Delegate = c.meta
	mc.Events = c
	mc.SecretKey = cfg.Key
	mc.Logger = log.New(&slogWriter{l: c.log.With("rank", self.Rank), closing: &c.closing}, "", 0)
	if c.ml, err = memberlist.Create(mc); err != nil {
		return nil, fmt.Errorf("cluster: rank %d: gossip on %s:%d: %w", self.Rank, mc.BindAddr, mc.BindPort, err)
	}
	if self.Rank == 0 {
		return c, nil
	}
	deadline := time.Now().Add(cfg.JoinTimeout)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		_, err := c.ml.Join([]string{cfg.Rdzv})
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			c.ml.Shutdown()
			hint := ""
			if cfg.Key != nil {
				hint = " (is the cluster secret the same on every node?)"
			}
			// memberlist's error lists one line per seed: make it one line.
			why := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "1 error occurred:", "")), " ")
			return nil, fmt.Errorf("cluster: rank %d could not join the rendezvous %s within %s%s: %s", self.Rank, cfg.Rdzv, cfg.JoinTimeout, hint, why)
		}
		select {
		case <-ctx.Done():
			c.ml.Shutdown()
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// checkLocal says whether host names one of this machine's addresses.
func checkLocal(host string) error {
	ips, err := net.LookupIP(host)
	if err != nil {
		return err
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return err
	}
	for _, ip := range ips {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				return nil
			}
		}
	}
	return fmt.Errorf("%s (%v) is not an address of this machine: start rank 0 on the rendezvous host", host, ips)
}

// Wait returns the whole world, ordered by rank (the ring order: every worker
// computes the same one), once every rank has joined. Two members claiming
// one rank, or a member of a different world, are errors.
func (c *Cluster) Wait(ctx context.Context) ([]Member, error) {
	timeout := time.NewTimer(c.cfg.JoinTimeout)
	defer timeout.Stop()
	for {
		world, missing, err := c.world()
		if err != nil {
			return nil, err
		}
		if len(missing) == 0 {
			c.mu.Lock()
			c.formed = true
			c.mu.Unlock()
			return world, nil
		}
		select {
		case <-c.changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout.C:
			return nil, fmt.Errorf("cluster: rank %d: ranks %v did not join within %s", c.cfg.Self.Rank, missing, c.cfg.JoinTimeout)
		}
	}
}

// viewed is a member as this worker last heard of it. memberlist's Members
// hands out nodes it keeps writing to, so the events copy what they carry.
type viewed struct {
	m    Member
	addr string // its gossip address
	err  error  // its metadata did not decode
}

func (c *Cluster) world() (world []Member, missing []int, err error) {
	byRank := make([]*Member, c.cfg.World)
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, v := range c.view {
		if v.err != nil {
			return nil, nil, fmt.Errorf("cluster: member %s (%s): metadata: %w", name, v.addr, v.err)
		}
		m := v.m
		if !c.same(m) {
			continue
		}
		if m.Rank < 0 || m.Rank >= c.cfg.World {
			return nil, nil, fmt.Errorf("cluster: member %s (%s) has rank %d, outside world %d: were the nodes started with different --nodes or --workers-per-node?", name, v.addr, m.Rank, c.cfg.World)
		}
		if o := byRank[m.Rank]; o != nil {
			return nil, nil, fmt.Errorf("cluster: ranks collide: %s and %s both claim rank %d", o.Addr, m.Addr, m.Rank)
		}
		byRank[m.Rank] = &m
	}
	for r, m := range byRank {
		if m == nil {
			missing = append(missing, r)
			continue
		}
		world = append(world, *m)
	}
	sort.Slice(world, func(i, j int) bool { return world[i].Rank < world[j].Rank })
	return world, missing, nil
}

// Lost tells of each member of the formed world that is gone before it said
// it was done (see Finish): memberlist's failure detector declared it dead,
// or it left on failing.
func (c *Cluster) Lost() <-chan Member { return c.lost }

// Close leaves the cluster (telling the others) and stops gossiping.
func (c *Cluster) Close() error {
	c.closing.Store(true)
	err := c.ml.Leave(time.Second)
	return errors.Join(err, c.ml.Shutdown())
}

// NotifyJoin, NotifyLeave and NotifyUpdate are memberlist's events; it calls
// them one at a time, with n safe to read during the call.
func (c *Cluster) NotifyJoin(n *memberlist.Node)   { c.record(n); c.poke() }
func (c *Cluster) NotifyUpdate(n *memberlist.Node) { c.record(n); c.poke() }

func (c *Cluster) record(n *memberlist.Node) {
	v := viewed{addr: n.Address()}
	v.err = json.Unmarshal(n.Meta, &v.m)
	c.mu.Lock()
	c.view[n.Name] = v
	c.mu.Unlock()
}

func (c *Cluster) NotifyLeave(n *memberlist.Node) {
	defer c.poke()
	c.mu.Lock()
	v, known := c.view[n.Name]
	delete(c.view, n.Name)
	formed := c.formed
	c.mu.Unlock()
	m := v.m
	if !known || v.err != nil || !c.same(m) || m.Rank == c.cfg.Self.Rank || !formed {
		return
	}
	// memberlist tells a leave from a death only in state it keeps to itself,
	// so a member says it is done (Finish) before it leaves: gone without
	// that, it is lost. Once this worker is done itself, no loss matters.
	if m.Done || c.finishing.Load() {
		c.log.Debug("cluster: member left", "rank", c.cfg.Self.Rank, "left_rank", m.Rank, "addr", n.Address())
		return
	}
	c.log.Warn("cluster: member lost", "rank", c.cfg.Self.Rank, "lost_rank", m.Rank, "addr", n.Address())
	select {
	case c.lost <- m:
	default:
	}
}

func (c *Cluster) poke() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// metaDelegate hands memberlist this worker's metadata; it gossips nothing else.
type metaDelegate struct {
	mu sync.Mutex
	b  []byte
}

func (d *metaDelegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.b
}
func (d *metaDelegate) set(b []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.b = b
}
func (d *metaDelegate) NotifyMsg([]byte)                           {}
func (d *metaDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *metaDelegate) LocalState(join bool) []byte                { return nil }
func (d *metaDelegate) MergeRemoteState(buf []byte, join bool)     {}

// slogWriter passes memberlist's warnings and errors to slog; its debug and
// info lines (every probe) are dropped.
type slogWriter struct {
	l       *slog.Logger
	closing *atomic.Bool
}

func (w *slogWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	switch {
	case w.closing.Load():
	case bytes.Contains(p, []byte("[ERR]")):
		w.l.Error(line)
	case bytes.Contains(p, []byte("[WARN]")):
		w.l.Warn(line)
	}
	return len(p), nil
}

var _ io.Writer = (*slogWriter)(nil)

// ClusterKeys derives, from the cluster secret, the key that encrypts and
// authenticates gossip (AES-256-GCM) and the token every gRPC stream carries
// (parallel.GRPCConfig.Token). Each is an HMAC-SHA256 of the secret with its
// own label, so neither gives away the other or the secret. The job's TLS CA
// is derived from the secret too, by parallel.DeriveTLS (HKDF-SHA256).
func ClusterKeys(secret []byte) (gossip []byte, token string) {
	mac := func(label string) []byte {
		h := hmac.New(sha256.New, secret)
		h.Write([]byte(label))
		return h.Sum(nil)
	}
	return mac("torus gossip v1"), hex.EncodeToString(mac("torus grpc v1"))
}
