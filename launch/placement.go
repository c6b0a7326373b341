package launch

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// DefaultRdzvPort is the rendezvous port when a scheduler names only the host
// (Slurm, Kubernetes) and no --rdzv says otherwise.
const DefaultRdzvPort = 29400

// Placement is where this `torus launch` process sits in a job, whatever told
// it: flags, Slurm, a Kubernetes indexed Job or torchrun-style variables.
type Placement struct {
	Source         string // "flags", "slurm", "kubernetes" or "torchrun"
	JobID          string // one job's members only ever join each other
	Nodes          int    // node count
	NodeRank       int    // this node, in [0, Nodes)
	WorkersPerNode int
	// Ranks are the global ranks of the workers this process starts: all of
	// its node's (NodeRank*WorkersPerNode ...), or, when the scheduler starts
	// one process per worker (srun with a task per worker, torchrun), one.
	Ranks []int
	Rdzv  string // HOST:PORT of the rendezvous (memberlist seed, served by rank 0)

	perWorker bool // the scheduler starts one process per worker
	// from names where each value came from, for error messages.
	from struct{ nodes, nodeRank, workers, rdzv, rank string }
}

// World is the number of workers in the job.
func (p Placement) World() int { return p.Nodes * p.WorkersPerNode }

// Overrides are the command line's values; a zero field (or negative rank) is
// "not given" and leaves the environment's value.
type Overrides struct {
	Nodes, NodeRank, WorkersPerNode int // NodeRank < 0: not given
	Rdzv, JobID                     string
}

// ParsePlacement reads the scheduler's variables through getenv (torchrun's
// first, then Slurm's, then a Kubernetes indexed Job's; none is fine when the
// flags say everything), applies the flags over them and checks the result.
// Every error names the variable or flag that is wrong.
func ParsePlacement(getenv func(string) string, o Overrides) (Placement, error) {
	var p Placement
	var err error
	switch {
	case getenv("WORLD_SIZE") != "" || getenv("RANK") != "":
		p, err = fromTorchrun(getenv)
	case getenv("SLURM_JOB_ID") != "":
		p, err = fromSlurm(getenv, o)
	case getenv("JOB_COMPLETION_INDEX") != "":
		p, err = fromKubernetes(getenv, o)
	default:
		p = Placement{Source: "flags", WorkersPerNode: 1, JobID: "torus"}
		p.from.workers = "--workers-per-node"
	}
	if err != nil {
		return Placement{}, fmt.Errorf("launch: %s placement: %w", p.Source, err)
	}
	if o.Nodes != 0 {
		p.Nodes, p.from.nodes = o.Nodes, "--nodes"
	}
	if o.NodeRank >= 0 {
		p.NodeRank, p.from.nodeRank = o.NodeRank, "--node-rank"
	}
	if o.WorkersPerNode != 0 {
		p.WorkersPerNode, p.from.workers = o.WorkersPerNode, "--workers-per-node"
	}
	if o.Rdzv != "" {
		p.Rdzv, p.from.rdzv = o.Rdzv, "--rdzv"
	}
	if o.JobID != "" {
		p.JobID = o.JobID
	}
	if !p.perWorker {
		p.Ranks = p.Ranks[:0]
		for i := range p.WorkersPerNode {
			p.Ranks = append(p.Ranks, p.NodeRank*p.WorkersPerNode+i)
		}
	}
	if err := p.validate(); err != nil {
		return Placement{}, fmt.Errorf("launch: %s placement: %w", p.Source, err)
	}
	return p, nil
}

func (p Placement) validate() error {
	var errs []error
	name := func(s, dflt string) string {
		if s == "" {
			return dflt
		}
		return s
	}
	nodes, nodeRank := name(p.from.nodes, "--nodes"), name(p.from.nodeRank, "--node-rank")
	workers, rdzv := name(p.from.workers, "--workers-per-node"), name(p.from.rdzv, "--rdzv")
	if p.Nodes < 1 {
		errs = append(errs, fmt.Errorf("node count %s is %d: it must be at least 1", nodes, p.Nodes))
	}
	if p.WorkersPerNode < 1 {
		errs = append(errs, fmt.Errorf("%s is %d: it must be at least 1", workers, p.WorkersPerNode))
	}
	if p.Nodes >= 1 && (p.NodeRank < 0 || p.NodeRank >= p.Nodes) {
		errs = append(errs, fmt.Errorf("node rank %s=%d is not below the node count %s=%d", nodeRank, p.NodeRank, nodes, p.Nodes))
	}
	for _, r := range p.Ranks {
		if p.Nodes >= 1 && p.WorkersPerNode >= 1 && (r < 0 || r >= p.World()) {
			errs = append(errs, fmt.Errorf("rank %s=%d is not below the world size %d", name(p.from.rank, "rank"), r, p.World()))
		}
	}
	if p.Rdzv == "" {
		errs = append(errs, fmt.Errorf("no rendezvous address: give %s HOST:PORT", rdzv))
	} else if host, port, err := net.SplitHostPort(p.Rdzv); err != nil || host == "" {
		errs = append(errs, fmt.Errorf("rendezvous %s=%q is not HOST:PORT", rdzv, p.Rdzv))
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		errs = append(errs, fmt.Errorf("rendezvous %s=%q: port %q is not a number in [1, 65535]", rdzv, p.Rdzv, port))
	}
	return errors.Join(errs...)
}

// envInt reads a required whole number, naming the variable when it is
// missing or not a number.
func envInt(getenv func(string) string, key string) (int, error) {
	v := strings.TrimSpace(getenv(key))
	if v == "" {
		return 0, fmt.Errorf("%s is not set", key)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q is not a whole number", key, v)
	}
	if n < 0 {
		return 0, fmt.Errorf("%s=%d is negative", key, n)
	}
	return n, nil
}

// fromTorchrun reads one worker's variables, as torchrun sets them for each
// process it starts: this process is the worker RANK.
func fromTorchrun(getenv func(string) string) (Placement, error) {
	p := Placement{Source: "torchrun", perWorker: true, JobID: "torus"}
	if id := getenv("TORCHELASTIC_RUN_ID"); id != "" {
		p.JobID = id
	}
	var errs []error
	need := func(key string) int {
		n, err := envInt(getenv, key)
		if err != nil {
			errs = append(errs, err)
		}
		return n
	}
	rank, world, local := need("RANK"), need("WORLD_SIZE"), need("LOCAL_RANK")
	perNode := world
	if getenv("LOCAL_WORLD_SIZE") != "" {
		perNode = need("LOCAL_WORLD_SIZE")
	}
	addr, port := getenv("MASTER_ADDR"), getenv("MASTER_PORT")
	if addr == "" {
		errs = append(errs, errors.New("MASTER_ADDR is not set: the rendezvous host"))
	}
	if port == "" {
		errs = append(errs, errors.New("MASTER_PORT is not set: the rendezvous port"))
	} else if _, err := envInt(getenv, "MASTER_PORT"); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return p, err
	}
	switch {
	case world < 1:
		return p, fmt.Errorf("WORLD_SIZE=%d: it must be at least 1", world)
	case rank >= world:
		return p, fmt.Errorf("RANK=%d is not below WORLD_SIZE=%d", rank, world)
	case perNode < 1 || world%perNode != 0:
		return p, fmt.Errorf("WORLD_SIZE=%d is not a multiple of LOCAL_WORLD_SIZE=%d", world, perNode)
	case local >= perNode:
		return p, fmt.Errorf("LOCAL_RANK=%d is not below LOCAL_WORLD_SIZE=%d", local, perNode)
	case rank%perNode != local:
		return p, fmt.Errorf("RANK=%d and LOCAL_RANK=%d disagree: with LOCAL_WORLD_SIZE=%d, rank %d is local rank %d", rank, local, perNode, rank, rank%perNode)
	}
	p.Nodes, p.NodeRank, p.WorkersPerNode, p.Ranks = world/perNode, rank/perNode, perNode, []int{rank}
	p.Rdzv = net.JoinHostPort(addr, port)
	p.from.nodes, p.from.nodeRank, p.from.workers, p.from.rdzv, p.from.rank = "WORLD_SIZE/LOCAL_WORLD_SIZE", "RANK/LOCAL_WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR:MASTER_PORT", "RANK"
	return p, nil
}

// fromSlurm reads srun's variables. With one task per node (srun
// --ntasks-per-node=1 torus launch ...) this process starts its node's
// workers; with one task per worker, it is the worker SLURM_PROCID. The
// rendezvous host is the node list's first host.
func fromSlurm(getenv func(string) string, o Overrides) (Placement, error) {
	p := Placement{Source: "slurm", JobID: "slurm-" + getenv("SLURM_JOB_ID")}
	var errs []error
	need := func(key string) int {
		n, err := envInt(getenv, key)
		if err != nil {
			errs = append(errs, err)
		}
		return n
	}
	procID, tasks, nodeID, nodes := need("SLURM_PROCID"), need("SLURM_NTASKS"), need("SLURM_NODEID"), need("SLURM_NNODES")
	local := 0
	if getenv("SLURM_LOCALID") != "" {
		local = need("SLURM_LOCALID")
	}
	list := getenv("SLURM_JOB_NODELIST")
	var hosts []string
	if list == "" && o.Rdzv == "" {
		errs = append(errs, errors.New("SLURM_JOB_NODELIST is not set, and no --rdzv names the rendezvous"))
	} else if list != "" {
		var err error
		if hosts, err = ExpandHostList(list); err != nil {
			errs = append(errs, fmt.Errorf("SLURM_JOB_NODELIST: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return p, err
	}
	switch {
	case nodes < 1:
		return p, fmt.Errorf("SLURM_NNODES=%d: it must be at least 1", nodes)
	case tasks < 1:
		return p, fmt.Errorf("SLURM_NTASKS=%d: it must be at least 1", tasks)
	case procID >= tasks:
		return p, fmt.Errorf("SLURM_PROCID=%d is not below SLURM_NTASKS=%d", procID, tasks)
	case nodeID >= nodes:
		return p, fmt.Errorf("SLURM_NODEID=%d is not below SLURM_NNODES=%d", nodeID, nodes)
	case tasks%nodes != 0:
		return p, fmt.Errorf("SLURM_NTASKS=%d is not a multiple of SLURM_NNODES=%d: torus needs as many workers on every node", tasks, nodes)
	case list != "" && len(hosts) < nodes:
		return p, fmt.Errorf("SLURM_JOB_NODELIST=%q names %d hosts, fewer than SLURM_NNODES=%d", list, len(hosts), nodes)
	}
	p.Nodes, p.NodeRank = nodes, nodeID
	p.from.nodes, p.from.nodeRank = "SLURM_NNODES", "SLURM_NODEID"
	if tasks == nodes { // a task per node: it starts the node's workers
		p.WorkersPerNode, p.from.workers = 1, "--workers-per-node"
	} else { // a task per worker
		perNode := tasks / nodes
		if local >= perNode {
			return p, fmt.Errorf("SLURM_LOCALID=%d is not below the tasks per node SLURM_NTASKS/SLURM_NNODES=%d", local, perNode)
		}
		if o.WorkersPerNode != 0 && o.WorkersPerNode != perNode {
			return p, fmt.Errorf("--workers-per-node %d, but srun starts a task per worker: SLURM_NTASKS/SLURM_NNODES=%d", o.WorkersPerNode, perNode)
		}
		p.perWorker, p.WorkersPerNode, p.Ranks = true, perNode, []int{procID}
		p.from.workers, p.from.rank = "SLURM_NTASKS/SLURM_NNODES", "SLURM_PROCID"
	}
	if len(hosts) > 0 {
		p.Rdzv, p.from.rdzv = net.JoinHostPort(hosts[0], strconv.Itoa(DefaultRdzvPort)), "SLURM_JOB_NODELIST"
	}
	return p, nil
}

// fromKubernetes reads an indexed Job's pod: JOB_COMPLETION_INDEX is the node
// rank; the node count comes from TORUS_NODES (the manifest sets it to the
// Job's completions) or --nodes. The rendezvous host is index 0's pod by its
// headless-service name, JOBNAME-0.SERVICE: JOBNAME is this pod's host name
// less its "-INDEX" suffix, SERVICE is TORUS_K8S_SERVICE (the pod's subdomain).
func fromKubernetes(getenv func(string) string, o Overrides) (Placement, error) {
	p := Placement{Source: "kubernetes", WorkersPerNode: 1}
	p.from.nodeRank, p.from.workers = "JOB_COMPLETION_INDEX", "--workers-per-node"
	index, err := envInt(getenv, "JOB_COMPLETION_INDEX")
	if err != nil {
		return p, err
	}
	p.NodeRank = index
	if getenv("TORUS_NODES") != "" {
		if p.Nodes, err = envInt(getenv, "TORUS_NODES"); err != nil {
			return p, err
		}
		p.from.nodes = "TORUS_NODES"
	} else if o.Nodes == 0 {
		return p, errors.New("TORUS_NODES is not set (the Job's completions), and no --nodes gives the node count")
	}
	host := getenv("HOSTNAME")
	job, ok := strings.CutSuffix(host, "-"+strconv.Itoa(index))
	if !ok || job == "" {
		if o.Rdzv != "" {
			p.JobID = "k8s"
			return p, nil
		}
		return p, fmt.Errorf("HOSTNAME=%q does not end in -%d (JOB_COMPLETION_INDEX), so the Job's name is unknown: give --rdzv", host, index)
	}
	p.JobID = "k8s-" + job
	svc := getenv("TORUS_K8S_SERVICE")
	if svc == "" {
		if o.Rdzv != "" {
			return p, nil
		}
		return p, errors.New("TORUS_K8S_SERVICE is not set (the headless service, the pods' subdomain), and no --rdzv names the rendezvous")
	}
	p.Rdzv, p.from.rdzv = net.JoinHostPort(job+"-0."+svc, strconv.Itoa(DefaultRdzvPort)), "HOSTNAME/TORUS_K8S_SERVICE"
	return p, nil
}
