package signaling

import (
	"errors"
	"io"
	"net"
	"strings"

	"github.com/gorilla/websocket"
)

var (
	// ErrConfig wraps every configuration problem New reports.
	ErrConfig = errors.New("signaling: invalid config")
	// ErrShutdown is returned by Shutdown when called a second time.
	ErrShutdown = errors.New("signaling: hub already shut down")
)

// Close codes the server sends. 1000-1011 are RFC 6455's; 4000-4999 are the
// private range.
const (
	CloseGoingAway      = websocket.CloseGoingAway       // 1001: the server is shutting down
	CloseProtocol       = websocket.CloseProtocolError   // 1002: no hello first, or the wrong version
	ClosePolicy         = websocket.ClosePolicyViolation // 1008: flooding, too many bad messages
	CloseTooLarge       = websocket.CloseMessageTooBig   // 1009: a frame over MaxMessageSize
	CloseResumed        = 4000                           // the session was resumed on another connection
	CloseBanned         = 4003                           // the client is banned (a banned message came first)
	closeNormalFromPeer = websocket.CloseNormalClosure   // 1000 from a client: it is done with its session
)

// closeReason labels why a connection ended, for metrics and logs. Only a few
// are unexpected (write errors); the rest are normal life.
type closeReason string

const (
	reasonClient       closeReason = "client"        // the client sent a close frame
	reasonLost         closeReason = "lost"          // EOF or reset without a close frame
	reasonHelloTimeout closeReason = "hello_timeout" // no hello within HelloTimeout
	reasonPongTimeout  closeReason = "pong_timeout"  // no pong within PongWait
	reasonTooLarge     closeReason = "too_large"     // frame over MaxMessageSize (1009)
	reasonRateLimit    closeReason = "rate_limit"    // sustained flooding (1008)
	reasonBadInput     closeReason = "bad_input"     // too many malformed messages (1008)
	reasonProtocol     closeReason = "protocol"      // no hello first, wrong version, bad frame (1002)
	reasonSlow         closeReason = "slow_consumer" // send queue full or write deadline missed
	reasonWriteError   closeReason = "write_error"   // any other write failure
	reasonResumed      closeReason = "resumed"       // replaced by a resumed connection (4000)
	reasonShutdown     closeReason = "shutdown"      // Shutdown (1001)
	reasonBanned       closeReason = "banned"        // the client is banned (4003)
)

// readCloseReason maps the error that ended a read loop to a reason. helloed
// tells a hello timeout from a pong timeout.
func readCloseReason(err error, helloed bool) closeReason {
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		return reasonClient
	case errors.Is(err, websocket.ErrReadLimit):
		return reasonTooLarge
	case errors.Is(err, errFrameFlood):
		return reasonRateLimit
	case errors.As(err, &ne) && ne.Timeout():
		if helloed {
			return reasonPongTimeout
		}
		return reasonHelloTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return reasonLost
	case strings.HasPrefix(err.Error(), "websocket: "):
		return reasonProtocol // a malformed frame; gorilla has sent 1002
	}
	return reasonLost
}
