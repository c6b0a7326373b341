package launch

import (
	"reflect"
	"strings"
	"testing"
)

func TestExpandHostList(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"gpu[01-04,07],cpu3", []string{"gpu01", "gpu02", "gpu03", "gpu04", "gpu07", "cpu3"}},
		{"node1", []string{"node1"}},
		{"a[8-11]", []string{"a8", "a9", "a10", "a11"}},
		{"r[1-2]n[1,3]", []string{"r1n1", "r1n3", "r2n1", "r2n3"}},
		{"x[009-010],y[1]", []string{"x009", "x010", "y1"}},
	} {
		got, err := ExpandHostList(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ExpandHostList(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"gpu[01-", "gpu[a-3]", "gpu[4-2]", "gpu]1"} {
		if _, err := ExpandHostList(bad); err == nil {
			t.Errorf("ExpandHostList(%q): no error", bad)
		}
	}
}

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

var none = Overrides{NodeRank: -1}

func TestParsePlacement(t *testing.T) {
	slurm := []string{"SLURM_JOB_ID", "42", "SLURM_PROCID", "2", "SLURM_NTASKS", "4", "SLURM_NODEID", "2",
		"SLURM_NNODES", "4", "SLURM_LOCALID", "0", "SLURM_JOB_NODELIST", "gpu[01-03],cpu3"}
	for _, c := range []struct {
		name string
		env  func(string) string
		o    Overrides
		want Placement
	}{
		{"flags", env(), Overrides{Nodes: 4, NodeRank: 1, WorkersPerNode: 2, Rdzv: "10.0.0.1:29400"},
			Placement{Source: "flags", JobID: "torus", Nodes: 4, NodeRank: 1, WorkersPerNode: 2, Ranks: []int{2, 3}, Rdzv: "10.0.0.1:29400"}},
		{"slurm task per node", env(slurm...), none,
			Placement{Source: "slurm", JobID: "slurm-42", Nodes: 4, NodeRank: 2, WorkersPerNode: 1, Ranks: []int{2}, Rdzv: "gpu01:29400"}},
		{"slurm task per node, 2 workers each, flags win", env(slurm...), Overrides{NodeRank: -1, WorkersPerNode: 2, Rdzv: "gpu02:7000"},
			Placement{Source: "slurm", JobID: "slurm-42", Nodes: 4, NodeRank: 2, WorkersPerNode: 2, Ranks: []int{4, 5}, Rdzv: "gpu02:7000"}},
		{"slurm task per worker", env("SLURM_JOB_ID", "7", "SLURM_PROCID", "5", "SLURM_NTASKS", "8", "SLURM_NODEID", "1",
			"SLURM_NNODES", "2", "SLURM_LOCALID", "1", "SLURM_JOB_NODELIST", "gpu[01-02]"), none,
			Placement{Source: "slurm", JobID: "slurm-7", Nodes: 2, NodeRank: 1, WorkersPerNode: 4, Ranks: []int{5}, Rdzv: "gpu01:29400", perWorker: true}},
		{"kubernetes", env("JOB_COMPLETION_INDEX", "3", "TORUS_NODES", "4", "HOSTNAME", "train-3", "TORUS_K8S_SERVICE", "torus"), none,
			Placement{Source: "kubernetes", JobID: "k8s-train", Nodes: 4, NodeRank: 3, WorkersPerNode: 1, Ranks: []int{3}, Rdzv: "train-0.torus:29400"}},
		{"kubernetes, flags give count and rendezvous", env("JOB_COMPLETION_INDEX", "0", "HOSTNAME", "pod"), Overrides{Nodes: 2, NodeRank: -1, Rdzv: "seed:1"},
			Placement{Source: "kubernetes", JobID: "k8s", Nodes: 2, NodeRank: 0, WorkersPerNode: 1, Ranks: []int{0}, Rdzv: "seed:1"}},
		{"torchrun", env("RANK", "5", "WORLD_SIZE", "8", "LOCAL_RANK", "1", "LOCAL_WORLD_SIZE", "4", "MASTER_ADDR", "10.1.1.1", "MASTER_PORT", "29500"), none,
			Placement{Source: "torchrun", JobID: "torus", Nodes: 2, NodeRank: 1, WorkersPerNode: 4, Ranks: []int{5}, Rdzv: "10.1.1.1:29500", perWorker: true}},
		{"torchrun ipv6, one node", env("RANK", "0", "WORLD_SIZE", "2", "LOCAL_RANK", "0", "MASTER_ADDR", "fd00::1", "MASTER_PORT", "1", "TORCHELASTIC_RUN_ID", "r9"), none,
			Placement{Source: "torchrun", JobID: "r9", Nodes: 1, NodeRank: 0, WorkersPerNode: 2, Ranks: []int{0}, Rdzv: "[fd00::1]:1", perWorker: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParsePlacement(c.env, c.o)
			if err != nil {
				t.Fatal(err)
			}
			got.from = c.want.from
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// TestParsePlacementErrors: each wrong or missing value is refused, and the
// message names the variable or flag.
func TestParsePlacementErrors(t *testing.T) {
	slurm := func(over ...string) func(string) string {
		kv := []string{"SLURM_JOB_ID", "42", "SLURM_PROCID", "0", "SLURM_NTASKS", "4", "SLURM_NODEID", "0",
			"SLURM_NNODES", "4", "SLURM_JOB_NODELIST", "gpu[01-04]"}
		return env(append(kv, over...)...)
	}
	torch := func(over ...string) func(string) string {
		kv := []string{"RANK", "1", "WORLD_SIZE", "4", "LOCAL_RANK", "0", "LOCAL_WORLD_SIZE", "1", "MASTER_ADDR", "h", "MASTER_PORT", "29500"}
		return env(append(kv, over...)...)
	}
	for _, c := range []struct {
		name string
		env  func(string) string
		o    Overrides
		want []string // every one must be in the message
	}{
		{"flags: nothing", env(), none, []string{"--nodes", "--rdzv"}},
		{"flags: node rank too big", env(), Overrides{Nodes: 2, NodeRank: 2, Rdzv: "h:1"}, []string{"--node-rank=2", "--nodes=2"}},
		{"flags: port not a number", env(), Overrides{Nodes: 1, NodeRank: 0, Rdzv: "h:http"}, []string{"--rdzv", "port"}},
		{"flags: no port", env(), Overrides{Nodes: 1, NodeRank: 0, Rdzv: "h"}, []string{"--rdzv", "HOST:PORT"}},
		{"torchrun: rank >= world", torch("RANK", "4", "LOCAL_RANK", "0"), none, []string{"RANK=4", "WORLD_SIZE=4"}},
		{"torchrun: missing address", torch("MASTER_ADDR", ""), none, []string{"MASTER_ADDR"}},
		{"torchrun: missing port", torch("MASTER_PORT", ""), none, []string{"MASTER_PORT"}},
		{"torchrun: not a number", torch("WORLD_SIZE", "four"), none, []string{`WORLD_SIZE="four"`}},
		{"torchrun: missing world", torch("WORLD_SIZE", ""), none, []string{"WORLD_SIZE is not set"}},
		{"torchrun: local rank disagrees", torch("LOCAL_WORLD_SIZE", "2", "LOCAL_RANK", "0"), none, []string{"RANK=1", "LOCAL_RANK=0"}},
		{"torchrun: uneven nodes", torch("LOCAL_WORLD_SIZE", "3"), none, []string{"LOCAL_WORLD_SIZE=3"}},
		{"slurm: procid >= ntasks", slurm("SLURM_PROCID", "4"), none, []string{"SLURM_PROCID=4", "SLURM_NTASKS=4"}},
		{"slurm: nodeid >= nnodes", slurm("SLURM_NODEID", "4"), none, []string{"SLURM_NODEID=4", "SLURM_NNODES=4"}},
		{"slurm: short node list", slurm("SLURM_JOB_NODELIST", "gpu[01-03]"), none, []string{"SLURM_JOB_NODELIST", "3 hosts", "SLURM_NNODES=4"}},
		{"slurm: bad node list", slurm("SLURM_JOB_NODELIST", "gpu[01-"), none, []string{"SLURM_JOB_NODELIST", "without"}},
		{"slurm: no node list", slurm("SLURM_JOB_NODELIST", ""), none, []string{"SLURM_JOB_NODELIST is not set"}},
		{"slurm: not a number", slurm("SLURM_NNODES", "x"), none, []string{`SLURM_NNODES="x"`}},
		{"slurm: uneven tasks", slurm("SLURM_NTASKS", "6"), none, []string{"SLURM_NTASKS=6", "SLURM_NNODES=4"}},
		{"slurm: node rank flag too big", slurm(), Overrides{NodeRank: 9}, []string{"--node-rank=9", "SLURM_NNODES=4"}},
		{"kubernetes: no node count", env("JOB_COMPLETION_INDEX", "0", "HOSTNAME", "j-0", "TORUS_K8S_SERVICE", "s"), none, []string{"TORUS_NODES", "--nodes"}},
		{"kubernetes: index >= nodes", env("JOB_COMPLETION_INDEX", "4", "TORUS_NODES", "4", "HOSTNAME", "j-4", "TORUS_K8S_SERVICE", "s"), none,
			[]string{"JOB_COMPLETION_INDEX=4", "TORUS_NODES=4"}},
		{"kubernetes: no service", env("JOB_COMPLETION_INDEX", "1", "TORUS_NODES", "4", "HOSTNAME", "j-1"), none, []string{"TORUS_K8S_SERVICE"}},
		{"kubernetes: host name", env("JOB_COMPLETION_INDEX", "1", "TORUS_NODES", "4", "HOSTNAME", "j-7", "TORUS_K8S_SERVICE", "s"), none, []string{"HOSTNAME", "-1"}},
		{"kubernetes: not a number", env("JOB_COMPLETION_INDEX", "one"), none, []string{`JOB_COMPLETION_INDEX="one"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := ParsePlacement(c.env, c.o)
			if err == nil {
				t.Fatalf("no error; placement %+v", p)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
