// Package parallel is everything that crosses workers: a job's layout
// (Topology, whose Mesh method is the one place a layout is checked), the
// Mesh (dp x sp) and its zigzag shards, the Transport (gRPC between processes,
// or an in-process fake for tests) and the collectives built on it (ring
// all-reduce, all-gather, all-to-all), and the attention schedules that span a
// ring: RingAttention and Ulysses. The model never imports this package: the trainer hands a schedule
// from here to the model's pieces.
//
//	mesh, _ := parallel.Topology{Workers: world, DP: dp, SeqLen: 4096}.Mesh() // sp: world/dp
//	t, _ := parallel.NewGRPC(ctx, parallel.GRPCConfig{Rank: r, Addrs: addrs, Listener: ln})
//	attn := &parallel.RingAttention{Attn: local, T: t, Mesh: mesh}
package parallel
