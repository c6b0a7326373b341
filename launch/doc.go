// Package launch starts and watches the worker processes of a job, and is where
// they find each other.
//
// On one machine (RunLocal, for torus train): N `torus worker` processes on
// loopback; the launcher gives them each other's addresses with a two-line
// handshake: the worker prints `TORUS-LISTEN host:port` on its stdout once it
// listens; when every worker has, the launcher writes one JSON line with all the
// addresses to every worker's stdin.
//
// Across machines (torus launch): ParsePlacement reads where this node sits from
// flags or a scheduler's variables (Slurm, a Kubernetes indexed Job, torchrun);
// RunLocal with SelfRendezvous starts the node's workers, and each joins the
// job's memberlist cluster (JoinCluster, seeded at the rendezvous address that
// the worker of rank 0 serves) and waits for the world (Cluster.Wait), ordered
// by rank: the ring. ClusterKeys turns the cluster secret into the gossip key
// and the gRPC token; Security says how the streams are secured (mutual TLS
// with a CA derived from the secret or a site's own, or plaintext on loopback
// only), and torus train hands its workers a fresh secret per run (NewSecret,
// LocalConfig.Env). JoinWorker is a worker's whole bring-up either way:
// listen, meet the others, connect the gRPC ring, build the Mesh. See
// docs/launch.md.
//
//	p, _ := launch.ParsePlacement(os.Getenv, launch.Overrides{Nodes: 4, NodeRank: 1, Rdzv: "10.0.0.1:29400"})
//	// p.Ranks == [1], p.World() == 4
package launch
