//go:build !linux

package relay

import "net"

// batchPool and batchReader batch reads with recvmmsg on Linux; elsewhere
// sockets are read one datagram per call.
type batchPool struct{}

func newBatchPool() *batchPool { return nil }

type batchReader struct{}

func newBatchReader(net.PacketConn, *batchPool, int) *batchReader { return nil }

func (*batchReader) ReadFrom([]byte) (int, net.Addr, error) { return 0, nil, net.ErrClosed }

func (*batchReader) Close() error { return nil }
