// Package wsclient is a client of the signaling protocol (package
// signaling, version 1) over a WebSocket, for the programs and tests that
// speak it from Go: strangers check, the NAT lab, the load generator and
// the end-to-end tests. It sends signaling's client message types and
// decodes what the server sends into signaling's server message types.
//
// A Conn has one writer at a time (Send and Close take a lock, so any
// goroutine may call them) and one reader: either the caller, through Recv,
// Next and WaitFor from a single goroutine, or, after Start, the Conn's own
// read goroutine, which delivers every message on Messages and which Close
// stops.
package wsclient

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/strangers-chat/strangers/signaling"
)

// Defaults of Options.
const (
	// DefaultHandshakeTimeout bounds the connect, TLS and upgrade.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultWriteWait bounds each write: a server that stops reading
	// must not hold a writer forever.
	DefaultWriteWait = 5 * time.Second
	// DefaultReadLimit caps one server message; a matched with ICE
	// servers or a signal with an SDP is a few kilobytes.
	DefaultReadLimit = 1 << 20
	// closeWait bounds waiting for the server's answer to a close frame.
	closeWait = time.Second
)

// Errors.
var (
	// ErrNotClientMessage is returned by Send for a value that is not one
	// of signaling's client messages.
	ErrNotClientMessage = errors.New("wsclient: not a client message")
	// ErrClosed is returned once the connection is closed or its reading
	// ended.
	ErrClosed = errors.New("wsclient: connection closed")
)

// Options shape a connection. The zero value is usable.
type Options struct {
	// Origin is sent as the handshake's Origin header (the server checks
	// it against its allowlist). Default: none.
	Origin string
	// TLS configures wss connections. Default: the system roots.
	TLS *tls.Config
	// HandshakeTimeout bounds the handshake. Default DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// WriteWait bounds each write. Default DefaultWriteWait.
	WriteWait time.Duration
	// ReadLimit caps one server message in bytes. Default DefaultReadLimit.
	ReadLimit int64
	// NetDialContext opens the TCP connection. Default: net.Dialer.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// ReadBufferSize and WriteBufferSize size the I/O buffers (gorilla's
	// default 4096 when 0); WriteBufferPool shares write buffers between
	// connections. For programs that hold thousands of connections.
	ReadBufferSize, WriteBufferSize int
	WriteBufferPool                 websocket.BufferPool
}

// HandshakeError is returned by Dial when the server answered the upgrade
// with an HTTP response other than 101 (a refused origin is 403).
type HandshakeError struct {
	URL        string
	StatusCode int
	Status     string
	Err        error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("wsclient: %s: %v (HTTP %s)", e.URL, e.Err, e.Status)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// ServerError is an error message from the server, returned by Hello and
// WaitFor.
type ServerError struct {
	Code    signaling.ErrorCode
	Message string
}

func (e *ServerError) Error() string { return fmt.Sprintf("server error %s: %s", e.Code, e.Message) }

// Unknown is a server message of a type this client does not know (from a
// newer server); Recv returns it rather than failing.
type Unknown struct {
	Type signaling.MsgType
	Raw  []byte
}

// Conn is one signaling connection. Reads belong to one goroutine: the
// caller of Recv, Next and WaitFor, or after Start the read goroutine,
// which Close stops and waits for. Writes may come from any goroutine.
type Conn struct {
	// Static after Dial.
	ws   *websocket.Conn
	url  string
	opts Options

	// Guarded by wmu: every write, and closeSent.
	wmu       sync.Mutex
	closeSent bool

	// Set by Start (startOnce); in is closed by the read goroutine when it
	// ends, and readErr, written before, says why.
	startOnce sync.Once
	in        chan any
	readErr   error

	closeOnce sync.Once

	// Owned by the reader.
	raw           []byte // RecvRaw's buffer, reused
	rawNoDeadline bool   // no read deadline is set: RecvRaw need not clear one
}

// Dial opens a signaling WebSocket at url (ws:// or wss://…/ws). It only
// connects: say Hello next.
func Dial(ctx context.Context, url string, opts Options) (*Conn, error) {
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.WriteWait <= 0 {
		opts.WriteWait = DefaultWriteWait
	}
	if opts.ReadLimit <= 0 {
		opts.ReadLimit = DefaultReadLimit
	}
	d := websocket.Dialer{
		HandshakeTimeout: opts.HandshakeTimeout,
		TLSClientConfig:  opts.TLS,
		NetDialContext:   opts.NetDialContext,
		ReadBufferSize:   opts.ReadBufferSize,
		WriteBufferSize:  opts.WriteBufferSize,
		WriteBufferPool:  opts.WriteBufferPool,
	}
	var hdr http.Header
	if opts.Origin != "" {
		hdr = http.Header{"Origin": {opts.Origin}}
	}
	ws, resp, err := d.DialContext(ctx, url, hdr)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close() // the upgrade's body is empty
	}
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, &HandshakeError{URL: url, StatusCode: resp.StatusCode, Status: resp.Status, Err: err}
		}
		return nil, fmt.Errorf("wsclient: dial %s: %w", url, err)
	}
	ws.SetReadLimit(opts.ReadLimit)
	return &Conn{ws: ws, url: url, opts: opts}, nil
}

// URL returns the URL the connection was dialled at.
func (c *Conn) URL() string { return c.url }

// Send writes one client message: a value (not a pointer) of
// signaling.Hello, Find, Next, Stop, Signal, Chat, Typing, Media, Report or
// ICERequest. Its Type field is filled in from its Go type. The write ends
// at ctx's deadline or after WriteWait, whichever comes first.
func (c *Conn) Send(ctx context.Context, msg any) error {
	m, typ, err := withType(msg)
	if err != nil {
		return err
	}
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("wsclient: encoding %s: %w", typ, err)
	}
	if err := c.write(ctx, websocket.TextMessage, data); err != nil {
		return fmt.Errorf("wsclient: sending %s: %w", typ, err)
	}
	return nil
}

// SendRaw writes one text frame as given, for a client that means to send
// what the typed messages cannot express.
func (c *Conn) SendRaw(ctx context.Context, data []byte) error {
	if err := c.write(ctx, websocket.TextMessage, data); err != nil {
		return fmt.Errorf("wsclient: sending: %w", err)
	}
	return nil
}

func (c *Conn) write(ctx context.Context, kind int, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.SetWriteDeadline(c.writeDeadline(ctx)); err != nil {
		return err
	}
	return c.ws.WriteMessage(kind, data)
}

func (c *Conn) writeDeadline(ctx context.Context) time.Time {
	dl := time.Now().Add(c.opts.WriteWait)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	return dl
}

// clientTypes are the messages Send takes, by Go type.
var clientTypes = map[reflect.Type]signaling.MsgType{
	reflect.TypeFor[signaling.Hello]():      signaling.TypeHello,
	reflect.TypeFor[signaling.Find]():       signaling.TypeFind,
	reflect.TypeFor[signaling.Next]():       signaling.TypeNext,
	reflect.TypeFor[signaling.Stop]():       signaling.TypeStop,
	reflect.TypeFor[signaling.Signal]():     signaling.TypeSignal,
	reflect.TypeFor[signaling.Chat]():       signaling.TypeChat,
	reflect.TypeFor[signaling.Typing]():     signaling.TypeTyping,
	reflect.TypeFor[signaling.Media]():      signaling.TypeMedia,
	reflect.TypeFor[signaling.Report]():     signaling.TypeReport,
	reflect.TypeFor[signaling.ICERequest](): signaling.TypeICE,
}

// serverTypes are the messages Recv returns (as pointers), by type.
var serverTypes = map[signaling.MsgType]reflect.Type{
	signaling.TypeWelcome:     reflect.TypeFor[signaling.Welcome](),
	signaling.TypeWaiting:     reflect.TypeFor[signaling.Waiting](),
	signaling.TypeMatched:     reflect.TypeFor[signaling.Matched](),
	signaling.TypeSignal:      reflect.TypeFor[signaling.Signal](),
	signaling.TypeChat:        reflect.TypeFor[signaling.Chat](),
	signaling.TypeTyping:      reflect.TypeFor[signaling.Typing](),
	signaling.TypeMedia:       reflect.TypeFor[signaling.Media](),
	signaling.TypePartnerLeft: reflect.TypeFor[signaling.PartnerLeft](),
	signaling.TypeStats:       reflect.TypeFor[signaling.Stats](),
	signaling.TypeICE:         reflect.TypeFor[signaling.ICEReply](),
	signaling.TypeError:       reflect.TypeFor[signaling.Error](),
	signaling.TypeBanned:      reflect.TypeFor[signaling.Banned](),
	signaling.TypeCooldown:    reflect.TypeFor[signaling.Cooldown](),
	signaling.TypeRestarting:  reflect.TypeFor[signaling.Restarting](),
}

// withType returns a copy of msg with its Type field set, and that type.
func withType(msg any) (any, signaling.MsgType, error) {
	typ, ok := clientTypes[reflect.TypeOf(msg)]
	if !ok {
		return nil, "", fmt.Errorf("%w: %T", ErrNotClientMessage, msg)
	}
	v := reflect.New(reflect.TypeOf(msg)).Elem()
	v.Set(reflect.ValueOf(msg))
	v.FieldByName("Type").SetString(string(typ))
	return v.Interface(), typ, nil
}

// Recv reads the next server message, a pointer to signaling.Welcome,
// Waiting, Matched, Signal, Chat, Typing, Media, PartnerLeft, Stats,
// ICEReply, Error, Banned, Cooldown or Restarting, or an *Unknown. It must
// not be called after Start, nor from two
// goroutines at once. A Recv ended by ctx leaves the connection unusable
// (the WebSocket cannot resume a read cut short); callers that wait on
// other things too use Start.
func (c *Conn) Recv(ctx context.Context) (any, error) {
	dl, _ := ctx.Deadline() // none: the zero time
	if err := c.ws.SetReadDeadline(dl); err != nil {
		return nil, fmt.Errorf("wsclient: reading: %w", err)
	}
	c.rawNoDeadline = dl.IsZero()
	// A cancelled ctx ends the read at once; the read reports the error.
	stop := context.AfterFunc(ctx, func() { _ = c.ws.SetReadDeadline(time.Now()) })
	defer stop()
	_, data, err := c.ws.ReadMessage()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("wsclient: reading: %w", ctx.Err())
		}
		return nil, fmt.Errorf("wsclient: reading: %w", err)
	}
	return DecodeServer(data)
}

// RecvRaw reads the next server message and returns it undecoded, valid
// until the next read. It is for clients that look at few fields of
// many messages (a load generator); the rules of Recv apply. It waits
// without a deadline, clearing one an earlier Recv (Hello's) left on the
// connection.
func (c *Conn) RecvRaw() ([]byte, error) {
	if !c.rawNoDeadline {
		if err := c.ws.SetReadDeadline(time.Time{}); err != nil {
			return nil, fmt.Errorf("wsclient: reading: %w", err)
		}
		c.rawNoDeadline = true
	}
	_, r, err := c.ws.NextReader()
	if err != nil {
		return nil, fmt.Errorf("wsclient: reading: %w", err)
	}
	buf := c.raw[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("wsclient: reading: %w", err)
		}
	}
	c.raw = buf
	return buf, nil
}

// DecodeServer decodes one server message (see Recv for what it returns).
// It is lenient where signaling.Decode is strict: fields it does not know
// are ignored, so that a client keeps working with a newer server.
func DecodeServer(data []byte) (any, error) {
	var env struct {
		Type signaling.MsgType `json:"type"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("wsclient: the server sent %.60q: %w", data, err)
	}
	t, ok := serverTypes[env.Type]
	if !ok {
		return &Unknown{Type: env.Type, Raw: data}, nil
	}
	m := reflect.New(t).Interface()
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("wsclient: the server sent a malformed %s: %w", env.Type, err)
	}
	return m, nil
}

// TypeOf returns the type of a message returned by Recv ("" for anything
// else).
func TypeOf(m any) signaling.MsgType {
	if u, ok := m.(*Unknown); ok {
		return u.Type
	}
	t := reflect.TypeOf(m)
	if t == nil || t.Kind() != reflect.Pointer {
		return ""
	}
	for typ, st := range serverTypes {
		if st == t.Elem() {
			return typ
		}
	}
	return ""
}

// Start hands reading to a goroutine of the Conn's own, which delivers
// every message on Messages until the connection ends; Close stops it.
// Calling it again does nothing.
func (c *Conn) Start() {
	c.startOnce.Do(func() {
		c.in = make(chan any, 64)
		go c.readLoop()
	})
}

func (c *Conn) readLoop() {
	defer close(c.in)
	for {
		m, err := c.Recv(context.Background())
		if err != nil {
			c.readErr = err
			return
		}
		c.in <- m
	}
}

// Messages returns the channel Start delivers on; it is closed when
// reading ends (then Err says why). It is nil before Start.
func (c *Conn) Messages() <-chan any { return c.in }

// Err says why reading ended, once Messages is closed.
func (c *Conn) Err() error { return c.readErr }

// Next returns the next message other than stats and waiting, which
// arrive at any time: from Messages after Start, else from Recv.
func (c *Conn) Next(ctx context.Context) (any, error) {
	for {
		m, err := c.next(ctx)
		if err != nil {
			return nil, err
		}
		switch m.(type) {
		case *signaling.Stats, *signaling.Waiting:
			continue
		}
		return m, nil
	}
}

func (c *Conn) next(ctx context.Context) (any, error) {
	if c.in == nil {
		return c.Recv(ctx)
	}
	select {
	case m, ok := <-c.in:
		if !ok {
			return nil, fmt.Errorf("%w: %w", ErrClosed, c.readErr)
		}
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// WaitFor reads until a message of type typ arrives and returns it
// (a pointer to the signaling type). Others are skipped, except an error
// message, which ends the wait as a *ServerError.
func (c *Conn) WaitFor(ctx context.Context, typ signaling.MsgType) (any, error) {
	for {
		m, err := c.next(ctx)
		if err != nil {
			return nil, err
		}
		if e, ok := m.(*signaling.Error); ok && typ != signaling.TypeError {
			return nil, &ServerError{Code: e.Code, Message: e.Message}
		}
		if TypeOf(m) == typ {
			return m, nil
		}
	}
}

// Wait is WaitFor for the message type T (signaling.Matched, say).
func Wait[T any](ctx context.Context, c *Conn, typ signaling.MsgType) (*T, error) {
	m, err := c.WaitFor(ctx, typ)
	if err != nil {
		return nil, err
	}
	t, ok := m.(*T)
	if !ok {
		return nil, fmt.Errorf("wsclient: %s decoded as %T", typ, m)
	}
	return t, nil
}

// Hello says hello (resume may be empty) and waits for welcome.
func (c *Conn) Hello(ctx context.Context, resume string) (*signaling.Welcome, error) {
	return c.HelloKey(ctx, resume, "")
}

// HelloKey is Hello presenting a client key from an earlier welcome
// (Welcome.ClientKey), as a browser does.
func (c *Conn) HelloKey(ctx context.Context, resume, clientKey string) (*signaling.Welcome, error) {
	if err := c.Send(ctx, signaling.Hello{Version: signaling.ProtocolVersion, Resume: resume, ClientKey: clientKey}); err != nil {
		return nil, err
	}
	return Wait[signaling.Welcome](ctx, c, signaling.TypeWelcome)
}

// SendClose writes a normal close frame (1000), once; the server answers
// with its own and ends the connection.
func (c *Conn) SendClose() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return nil
	}
	c.closeSent = true
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	return c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(c.opts.WriteWait))
}

// Close ends the session for good: it sends a normal close frame, waits a
// little for the server's answer when its own reader runs, closes the
// connection and waits for that reader to end. It is idempotent.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		_ = c.SendClose()         // best effort: the connection is closed below anyway
		c.startOnce.Do(func() {}) // no Start from now on
		if c.in != nil {
			t := time.NewTimer(closeWait)
			defer t.Stop()
		drain:
			for {
				select {
				case _, ok := <-c.in:
					if !ok {
						break drain
					}
				case <-t.C:
					break drain
				}
			}
		}
		err = c.ws.Close()
		if c.in != nil {
			for range c.in {
			}
		}
	})
	return err
}
