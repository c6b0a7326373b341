// Package launch starts and watches the worker processes of a job. For now: the
// local spawner, which runs N `torus worker` processes on this machine's loopback,
// gives them each other's addresses, and stops them all when the run ends or any
// of them fails. Rendezvous across machines (memberlist), scheduler conventions
// and restarts come later (DESIGN.md, "Cluster").
//
// The handshake between the launcher and a worker is two lines: the worker prints
// `TORUS-LISTEN host:port` on its stdout once it listens; when every worker has,
// the launcher writes one JSON line with all the addresses to every worker's stdin.
package launch
