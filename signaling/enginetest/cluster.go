package enginetest

// The rules of a cluster: pairing, forwarding, claims and ends across
// nodes.

func clusterRules() []rule { return nil }

func outageRules() []rule { return nil }
