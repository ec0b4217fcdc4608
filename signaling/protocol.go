package signaling

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ProtocolVersion is the only version a hello may name. It changes when a
// change to the message set would break an existing client.
const ProtocolVersion = 1

// Bounds on the fields of client messages. They are part of the protocol: a
// message breaking one is answered with an error and otherwise ignored.
const (
	MaxInterests     = 10        // distinct tags in a find, after normalisation
	MaxInterestLen   = 32        // characters per tag
	maxRawInterests  = 32        // array length before normalisation (duplicates, blanks)
	MaxChatLen       = 1000      // characters of chat text
	MaxReasonLen     = 200       // characters of a report reason
	MaxNoteLen       = 500       // characters of a report's free-text note
	MaxFrameBytes    = 40 << 10  // bytes of a report's still frame (JPEG), before base64
	MaxSDPLen        = 32 << 10  // bytes of a session description
	MaxCandidateLen  = 1024      // bytes of a candidate line
	maxMidLen        = 64        // bytes of an sdpMid
	maxUfragLen      = 256       // bytes of an ICE username fragment (RFC 8839 allows 4-256)
	maxIDLen         = 64        // bytes of a match id or resume token as sent by a client
	maxJSONDepth     = 4         // nesting of objects and arrays; the deepest message needs 2
	maxDecodeMessage = 256 << 10 // Decode's own cap, above any sane MaxMessageSize
)

// MsgType names a message; it is the envelope's "type" field.
type MsgType string

// Client to server.
const (
	TypeHello  MsgType = "hello"
	TypeFind   MsgType = "find"
	TypeNext   MsgType = "next"
	TypeStop   MsgType = "stop"
	TypeSignal MsgType = "signal" // both directions
	TypeChat   MsgType = "chat"   // both directions
	TypeTyping MsgType = "typing" // both directions
	TypeMedia  MsgType = "media"  // both directions: camera and microphone on or off
	TypeReport MsgType = "report"
	TypeICE    MsgType = "ice" // both directions: ICE servers without a match
)

// Server to client.
const (
	TypeWelcome     MsgType = "welcome"
	TypeWaiting     MsgType = "waiting"
	TypeMatched     MsgType = "matched"
	TypePartnerLeft MsgType = "partner_left"
	TypeStats       MsgType = "stats"
	TypeError       MsgType = "error"
	TypeBanned      MsgType = "banned"   // the client is banned; the connection is then closed (4003)
	TypeCooldown    MsgType = "cooldown" // too many nexts: not queued until the cooldown is over
	TypeRestarting  MsgType = "restarting"
)

// Mode separates the pools: video users only meet video users, text users
// only text users.
type Mode string

const (
	ModeVideo Mode = "video"
	ModeText  Mode = "text"
)

func (m Mode) valid() bool { return m == ModeVideo || m == ModeText }

// Role tells each side of a match what to do: the offerer creates the offer,
// the answerer waits for it. Exactly one side of every match is the offerer.
type Role string

const (
	RoleOfferer  Role = "offerer"
	RoleAnswerer Role = "answerer"
)

// LeftReason says why a partner_left was sent.
type LeftReason string

const (
	LeftNext         LeftReason = "next"
	LeftStop         LeftReason = "stop"
	LeftDisconnected LeftReason = "disconnected"
	LeftReported     LeftReason = "reported"
)

// State is a session's place in the matchmaker, as reported in welcome.
type State string

const (
	StateIdle    State = "idle"
	StateWaiting State = "waiting"
	StateMatched State = "matched"
)

// ErrorCode is the stable, machine-readable code of an error message.
type ErrorCode string

const (
	CodeBadMessage  ErrorCode = "bad_message"  // malformed JSON, wrong field types, unknown fields, bad values
	CodeUnknownType ErrorCode = "unknown_type" // well-formed, but the type is not one this server knows
	CodeTooLarge    ErrorCode = "too_large"    // a field is over its bound (the frame itself is capped by close 1009)
	CodeNotHello    ErrorCode = "not_hello"    // the first message was not a hello (the connection is then closed)
	CodeBadVersion  ErrorCode = "bad_version"  // the hello named another protocol version (the connection is then closed)
	CodeBadState    ErrorCode = "bad_state"    // the message makes no sense now: a second hello, find while matched, next before any find
	CodeBadResume   ErrorCode = "bad_resume"   // the resume token is unknown or its grace expired; a fresh session follows
	CodeNotInMatch  ErrorCode = "not_in_match" // a report named a match the sender is not and was not just in
	CodeRateLimited ErrorCode = "rate_limited" // messages are being dropped; keep sending and the connection is closed (1008)
	CodeUnavailable ErrorCode = "unavailable"  // matching is down for now (its shared backend cannot be reached); calls go on, try find again shortly
)

// ICEServer mirrors the browser's RTCIceServer dictionary.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// SessionDescription mirrors RTCSessionDescriptionInit.
type SessionDescription struct {
	Type string `json:"type"` // offer, answer, pranswer or rollback
	SDP  string `json:"sdp"`
}

// ICECandidate mirrors RTCIceCandidateInit. An empty Candidate is the
// end-of-candidates marker.
type ICECandidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// Hello must be a connection's first message.
type Hello struct {
	Type    MsgType `json:"type"`
	Version int     `json:"version"`
	Resume  string  `json:"resume,omitempty"` // token from an earlier welcome
	// ClientKey is the key an earlier welcome gave this browser; a missing,
	// forged or damaged one is replaced by a fresh key in welcome.
	ClientKey string `json:"clientKey,omitempty"`
}

// Find asks to be paired. Interests are normalised by Decode (trimmed,
// lower-cased, blanks dropped, deduplicated).
type Find struct {
	Type          MsgType  `json:"type"`
	Mode          Mode     `json:"mode"`
	Interests     []string `json:"interests,omitempty"`
	RelayOnly     bool     `json:"relayOnly,omitempty"`     // hide my IP: my non-relay candidates are never forwarded
	InterestsOnly bool     `json:"interestsOnly,omitempty"` // never fall back to a partner without a common tag
}

// Next ends the current match, if any, and queues the sender again with its
// last find.
type Next struct {
	Type MsgType `json:"type"`
}

// Stop ends the current match or leaves the queue.
type Stop struct {
	Type MsgType `json:"type"`
}

// Signal carries exactly one of an SDP or an ICE candidate to the partner.
type Signal struct {
	Type      MsgType             `json:"type"`
	Match     string              `json:"match"`
	SDP       *SessionDescription `json:"sdp,omitempty"`
	Candidate *ICECandidate       `json:"candidate,omitempty"`
}

// Chat carries a line of text to the partner.
type Chat struct {
	Type  MsgType `json:"type"`
	Match string  `json:"match"`
	Text  string  `json:"text"`
}

// Typing tells the partner whether the sender is typing.
type Typing struct {
	Type   MsgType `json:"type"`
	Match  string  `json:"match"`
	Typing bool    `json:"typing"`
}

// Media tells the partner whether the sender's camera and microphone are
// on, so that its page can say so rather than show a black picture or
// silence. A page sends it right after a match and on every change.
type Media struct {
	Type   MsgType `json:"type"`
	Match  string  `json:"match"`
	Camera bool    `json:"camera"` // the camera is on: a picture is being sent
	Mic    bool    `json:"mic"`    // the microphone is on: not muted
}

// Report flags the partner of the named match (the current one, or the one
// that just ended). The two are never paired again. The server keeps the
// match's last chat lines as evidence, with the note and the still frame.
type Report struct {
	Type   MsgType `json:"type"`
	Match  string  `json:"match"`
	Reason string  `json:"reason,omitempty"`
	Note   string  `json:"note,omitempty"` // free text, at most MaxNoteLen characters
	// Frame is a still of the partner's video taken by the reporter's
	// page: a JPEG of at most MaxFrameBytes, base64 in JSON.
	Frame []byte `json:"frame,omitempty"`
}

// ICERequest asks for ICE servers outside a match (for a connectivity
// preflight or a checker). It is answered with ICEReply; at most
// iceRequestBurst in a row, then one per iceRequestEvery.
type ICERequest struct {
	Type MsgType `json:"type"`
}

// ICEReply answers ICERequest with ICE servers (fresh TURN credentials) for
// the session.
type ICEReply struct {
	Type       MsgType     `json:"type"`
	ICEServers []ICEServer `json:"iceServers"`
}

// Limits tells a client the bounds it must stay within (sent in welcome).
type Limits struct {
	MaxMessageSize int64   `json:"maxMessageSize"` // bytes per frame
	RateLimit      float64 `json:"rateLimit"`      // messages per second, sustained
	RateBurst      int     `json:"rateBurst"`      // messages in a burst
	MaxInterests   int     `json:"maxInterests"`
	MaxInterestLen int     `json:"maxInterestLen"`
	MaxChatLen     int     `json:"maxChatLen"`
	InterestWaitMs int64   `json:"interestWaitMs"` // wait before interests give way to anyone
	ResumeGraceMs  int64   `json:"resumeGraceMs"`  // how long a dropped session can be resumed
	MaxNoteLen     int     `json:"maxNoteLen"`     // characters of a report note
	MaxFrameBytes  int     `json:"maxFrameBytes"`  // bytes of a report's still frame (JPEG); 0: none fits a message
	NextRate       int     `json:"nextRate"`       // nexts (and finds) per minute before a cooldown
}

// Welcome answers hello.
type Welcome struct {
	Type    MsgType `json:"type"`
	Version int     `json:"version"`
	Session string  `json:"session"` // session id: 22 characters of [A-Za-z0-9_-]
	Resume  string  `json:"resume"`  // secret token for hello.resume; keep it private
	Online  int     `json:"online"`
	Resumed bool    `json:"resumed,omitempty"` // the hello's resume token was honoured
	State   State   `json:"state"`             // where the session stands (matters after a resume)
	Match   string  `json:"match,omitempty"`   // the current match when State is matched
	Limits  Limits  `json:"limits"`
	// ClientKey identifies this browser without an account: keep it (in
	// localStorage) and send it in every hello. Reports, limits and bans
	// refer to it and to the client address.
	ClientKey string `json:"clientKey"`
}

// Waiting confirms the sender is queued.
type Waiting struct {
	Type MsgType `json:"type"`
	Mode Mode    `json:"mode"`
	// FallbackIn is how many milliseconds remain until a session with
	// interests may be paired with anyone; 0 when it already may, or never will.
	FallbackIn int64 `json:"fallbackIn,omitempty"`
}

// Matched announces a new match to each side.
type Matched struct {
	Type       MsgType     `json:"type"`
	Match      string      `json:"match"`
	Role       Role        `json:"role"`
	ICEServers []ICEServer `json:"iceServers"` // with fresh credentials for this session
	Interests  []string    `json:"interests"`  // the tags both sides share
	Mode       Mode        `json:"mode"`
	RelayOnly  bool        `json:"relayOnly,omitempty"` // echo of this side's find.relayOnly
}

// PartnerLeft ends a match from the other side.
type PartnerLeft struct {
	Type   MsgType    `json:"type"`
	Match  string     `json:"match"`
	Reason LeftReason `json:"reason"`
}

// Stats is pushed now and then, only when the figures changed.
type Stats struct {
	Type    MsgType `json:"type"`
	Online  int     `json:"online"`
	Waiting int     `json:"waiting"` // in all modes
	// WaitingVideo and WaitingText split Waiting by mode, for a waiting
	// screen to say how many wait in its own.
	WaitingVideo int `json:"waitingVideo"`
	WaitingText  int `json:"waitingText"`
}

// Banned tells a banned client why and until when, and whom to ask; the
// server then closes the connection with 4003 and refuses the client until
// the ban ends, reconnecting included.
type Banned struct {
	Type   MsgType `json:"type"`
	Reason string  `json:"reason"`
	Until  int64   `json:"until"`            // Unix milliseconds
	Appeal string  `json:"appeal,omitempty"` // how to appeal (an address, a URL)
}

// Cooldown answers a find or next over the skip limit (Limits.NextRate a
// minute): the client is not queued (a match it was in has ended) and may
// find again after RetryIn milliseconds.
type Cooldown struct {
	Type    MsgType `json:"type"`
	RetryIn int64   `json:"retryIn"`
}

// Restarting is sent to every connection when the server shuts down (on
// SIGTERM, most often to restart), just before it closes them with 1001.
// Sessions do not survive a restart: reconnect after RetryIn, and expect a
// new session (hello's resume token is then refused with bad_resume).
type Restarting struct {
	Type    MsgType `json:"type"`
	RetryIn int64   `json:"retryIn"` // milliseconds after which to reconnect
}

// Error reports a message the server would not act on.
type Error struct {
	Type    MsgType   `json:"type"`
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
}

// DecodeError is what Decode returns for input it rejects; Code is what the
// client is told.
type DecodeError struct {
	Code ErrorCode
	Msg  string
}

func (e *DecodeError) Error() string { return "signaling: " + string(e.Code) + ": " + e.Msg }

func decodeErr(code ErrorCode, format string, args ...any) error {
	return &DecodeError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Decode parses one client message strictly: a JSON object with a known
// "type", no unknown fields, fields of the right types, values within their
// bounds, nothing after the object. It returns a pointer to Hello, Find,
// Next, Stop, Signal, Chat, Typing, Media, Report or ICERequest, or a
// *DecodeError.
func Decode(data []byte) (any, error) {
	if len(data) > maxDecodeMessage {
		return nil, decodeErr(CodeTooLarge, "message of %d bytes", len(data))
	}
	if err := checkDepth(data); err != nil {
		return nil, err
	}
	var env struct {
		Type MsgType `json:"type"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, decodeErr(CodeBadMessage, "not a JSON object with a string type")
	}
	var msg interface{ validate() error }
	switch env.Type {
	case TypeHello:
		msg = new(Hello)
	case TypeFind:
		msg = new(Find)
	case TypeNext:
		msg = new(Next)
	case TypeStop:
		msg = new(Stop)
	case TypeSignal:
		msg = new(Signal)
	case TypeChat:
		msg = new(Chat)
	case TypeTyping:
		msg = new(Typing)
	case TypeMedia:
		msg = new(Media)
	case TypeReport:
		msg = new(Report)
	case TypeICE:
		msg = new(ICERequest)
	case "":
		return nil, decodeErr(CodeBadMessage, "missing type")
	default:
		return nil, decodeErr(CodeUnknownType, "unknown type %.32q", env.Type)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(msg); err != nil {
		return nil, decodeErr(CodeBadMessage, "%s: %s", env.Type, jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, decodeErr(CodeBadMessage, "data after the message")
	}
	if err := msg.validate(); err != nil {
		return nil, err
	}
	return msg, nil
}

// jsonProblem describes a decoding error without echoing client data at
// length.
func jsonProblem(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Sprintf("field %.40q must be %s", typeErr.Field, typeErr.Type)
	}
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return strings.TrimPrefix(s, "json: ")
}

// checkDepth rejects nesting deeper than maxJSONDepth before any decoder
// walks it.
func checkDepth(data []byte) error {
	depth, inString, escaped := 0, false, false
	for _, b := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
		case b == '"':
			inString = true
		case b == '{' || b == '[':
			depth++
			if depth > maxJSONDepth {
				return decodeErr(CodeBadMessage, "nested deeper than %d", maxJSONDepth)
			}
		case b == '}' || b == ']':
			depth--
		}
	}
	return nil
}

func checkLen(field, s string, limit int) error {
	if len(s) > limit {
		return decodeErr(CodeTooLarge, "%s longer than %d bytes", field, limit)
	}
	return nil
}

func checkRunes(field, s string, limit int) error {
	if len(s) > limit*utf8.UTFMax || utf8.RuneCountInString(s) > limit {
		return decodeErr(CodeTooLarge, "%s longer than %d characters", field, limit)
	}
	return nil
}

func checkMatch(id string) error {
	if id == "" {
		return decodeErr(CodeBadMessage, "missing match")
	}
	return checkLen("match", id, maxIDLen)
}

func (m *Hello) validate() error {
	if m.Version <= 0 {
		return decodeErr(CodeBadMessage, "missing version")
	}
	if err := checkLen("resume", m.Resume, maxIDLen); err != nil {
		return err
	}
	return checkLen("clientKey", m.ClientKey, maxClientKey)
}

func (m *Find) validate() error {
	if !m.Mode.valid() {
		return decodeErr(CodeBadMessage, "mode must be %q or %q", ModeVideo, ModeText)
	}
	tags, err := normalizeInterests(m.Interests)
	if err != nil {
		return err
	}
	m.Interests = tags
	return nil
}

// normalizeInterests trims, lower-cases, drops blanks and duplicates, and
// enforces MaxInterests and MaxInterestLen. It returns nil for no tags.
func normalizeInterests(raw []string) ([]string, error) {
	if len(raw) > maxRawInterests {
		return nil, decodeErr(CodeTooLarge, "more than %d interests", maxRawInterests)
	}
	var tags []string
	for _, t := range raw {
		if len(t) > 4*MaxInterestLen*utf8.UTFMax {
			return nil, decodeErr(CodeTooLarge, "interest longer than %d characters", MaxInterestLen)
		}
		t = strings.ToLower(strings.TrimSpace(t))
		if t == "" {
			continue
		}
		if err := checkRunes("interest", t, MaxInterestLen); err != nil {
			return nil, err
		}
		if strings.IndexFunc(t, unicode.IsControl) >= 0 || !utf8.ValidString(t) {
			return nil, decodeErr(CodeBadMessage, "interest with control characters")
		}
		dup := false
		for _, have := range tags {
			if have == t {
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		if len(tags) == MaxInterests {
			return nil, decodeErr(CodeTooLarge, "more than %d interests", MaxInterests)
		}
		tags = append(tags, t)
	}
	return tags, nil
}

func (m *Next) validate() error       { return nil }
func (m *ICERequest) validate() error { return nil }
func (m *Stop) validate() error       { return nil }

func (m *Signal) validate() error {
	if err := checkMatch(m.Match); err != nil {
		return err
	}
	switch {
	case (m.SDP == nil) == (m.Candidate == nil):
		return decodeErr(CodeBadMessage, "signal needs exactly one of sdp and candidate")
	case m.SDP != nil:
		switch m.SDP.Type {
		case "offer", "answer", "pranswer", "rollback":
		default:
			return decodeErr(CodeBadMessage, "sdp.type must be offer, answer, pranswer or rollback")
		}
		return checkLen("sdp", m.SDP.SDP, MaxSDPLen)
	default:
		c := m.Candidate
		if err := checkLen("candidate", c.Candidate, MaxCandidateLen); err != nil {
			return err
		}
		if c.SDPMid != nil {
			if err := checkLen("sdpMid", *c.SDPMid, maxMidLen); err != nil {
				return err
			}
		}
		if c.UsernameFragment != nil {
			if err := checkLen("usernameFragment", *c.UsernameFragment, maxUfragLen); err != nil {
				return err
			}
		}
		return nil
	}
}

func (m *Chat) validate() error {
	if err := checkMatch(m.Match); err != nil {
		return err
	}
	if m.Text == "" {
		return decodeErr(CodeBadMessage, "empty text")
	}
	return checkRunes("text", m.Text, MaxChatLen)
}

func (m *Typing) validate() error { return checkMatch(m.Match) }
func (m *Media) validate() error  { return checkMatch(m.Match) }

func (m *Report) validate() error {
	if err := checkMatch(m.Match); err != nil {
		return err
	}
	if err := checkRunes("reason", m.Reason, MaxReasonLen); err != nil {
		return err
	}
	if err := checkRunes("note", m.Note, MaxNoteLen); err != nil {
		return err
	}
	if len(m.Frame) > MaxFrameBytes {
		return decodeErr(CodeTooLarge, "frame of %d bytes: at most %d bytes of JPEG", len(m.Frame), MaxFrameBytes)
	}
	if len(m.Frame) > 0 && !isJPEG(m.Frame) {
		return decodeErr(CodeBadMessage, "frame is not a JPEG image")
	}
	return nil
}

// isJPEG reports whether b starts and ends like a JPEG file (SOI, EOI).
func isJPEG(b []byte) bool {
	return len(b) >= 4 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF && b[len(b)-2] == 0xFF && b[len(b)-1] == 0xD9
}

// msgType returns the type of a decoded client message.
func msgType(m any) MsgType {
	switch m.(type) {
	case *Hello:
		return TypeHello
	case *Find:
		return TypeFind
	case *Next:
		return TypeNext
	case *Stop:
		return TypeStop
	case *Signal:
		return TypeSignal
	case *Chat:
		return TypeChat
	case *Typing:
		return TypeTyping
	case *Media:
		return TypeMedia
	case *Report:
		return TypeReport
	case *ICERequest:
		return TypeICE
	}
	return ""
}
