package moderation

import (
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/strangers-chat/strangers/signaling"
)

// The admin API, on its own listener: every /api/v1/ request needs
// "Authorization: Bearer <token>" (never a cookie, so a browser cannot be
// made to send it from another site), a request that says it comes from
// another site (Origin, Sec-Fetch-Site) is refused, writes must be JSON, and
// no response may be cached.

// Hub is what the admin API needs of the matchmaker (*signaling.Hub).
type Hub interface {
	Enforce(ban signaling.Identity, notice signaling.BanNotice) int
	Counts() signaling.Counts
	AddrHash(a netip.Addr) string
}

// AdminConfig configures the admin handler.
type AdminConfig struct {
	Service *Service
	Hub     Hub
	// Token is the bearer token moderators present. Required.
	Token  string
	Logger *slog.Logger
}

// maxList caps the entries a list returns (newest first).
const maxList = 500

// maxBody bounds a request body.
const maxBody = 16 << 10

//go:embed admin/*
var adminFiles embed.FS

// adminCSP keeps the admin page to its own files; frames come as data:
// URLs.
const adminCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// TokenID is the short, non-secret name of a token in the audit log.
func TokenID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:4])
}

type admin struct {
	svc     *Service
	hub     Hub
	token   []byte
	tokenID string
	log     *slog.Logger
}

// NewAdmin returns the handler of the admin listener: the API under
// /api/v1/ and the admin page at /.
func NewAdmin(cfg AdminConfig) (http.Handler, error) {
	if cfg.Service == nil || cfg.Hub == nil || cfg.Token == "" {
		return nil, errors.New("moderation: the admin API needs a service, a hub and a token")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &admin{svc: cfg.Service, hub: cfg.Hub, token: []byte(cfg.Token), tokenID: TokenID(cfg.Token), log: cfg.Logger.With("component", "admin")}
	api := http.NewServeMux()
	api.HandleFunc("GET /api/v1/stats", a.stats)
	api.HandleFunc("GET /api/v1/reports", a.reports)
	api.HandleFunc("GET /api/v1/reports/{id}", a.report)
	api.HandleFunc("POST /api/v1/reports/{id}/dismiss", a.dismiss)
	api.HandleFunc("POST /api/v1/reports/{id}/act", a.act)
	api.HandleFunc("GET /api/v1/bans", a.bans)
	api.HandleFunc("POST /api/v1/bans", a.createBan)
	api.HandleFunc("DELETE /api/v1/bans/{id}", a.liftBan)
	api.HandleFunc("GET /api/v1/pool", a.pool)
	api.HandleFunc("DELETE /api/v1/pool/{client}", a.unshadow)
	api.HandleFunc("GET /api/v1/audit", a.audit)
	api.HandleFunc("/api/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "no such resource")
	})

	page, _ := fs.Sub(adminFiles, "admin") // a valid, embedded path
	files := http.FileServerFS(page)
	mux := http.NewServeMux()
	mux.Handle("/api/", a.guard(api))
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, http.StatusMethodNotAllowed, "the page is read-only")
			return
		}
		// The page itself is static and holds nothing: no cross-site
		// check (it may be opened from a link); frames are refused.
		w.Header().Set("Content-Security-Policy", adminCSP)
		files.ServeHTTP(w, r)
	}))
	return headers(mux), nil
}

// headers sets what every admin response carries.
func headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Cache-Control", "no-store")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

// crossSite reports whether a browser says the request comes from another
// site: Sec-Fetch-Site other than same-origin or none (typed or
// bookmarked), or an Origin whose host is not the request's.
func crossSite(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return true
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return true
		}
	}
	return false
}

// guard checks the token, the origin and the content type.
func (a *admin) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if crossSite(r) {
			writeError(w, http.StatusForbidden, "cross-site request refused")
			return
		}
		const prefix = "Bearer "
		auth := r.Header.Get("Authorization")
		if len(auth) <= len(prefix) || auth[:len(prefix)] != prefix ||
			subtle.ConstantTimeCompare([]byte(auth[len(prefix):]), a.token) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="strangers admin"`)
			writeError(w, http.StatusUnauthorized, "a valid bearer token is required")
			return
		}
		if r.Method == http.MethodPost {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, "send application/json")
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// fail answers an error of the service.
func (a *admin) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "not found")
	case errors.Is(err, ErrNoTarget), errors.Is(err, ErrBadRequest):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		a.log.Error("admin request failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errors.New("duration must be like 1h or 168h")
	}
	return d, nil
}

func newest[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs[:min(len(xs), maxList)]
}

func (a *admin) stats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		signaling.Counts
		Stats
	}{a.hub.Counts(), a.svc.Stats()})
}

func (a *admin) reports(w http.ResponseWriter, r *http.Request) {
	all, err := a.svc.Reports()
	if err != nil {
		a.fail(w, err)
		return
	}
	status := r.URL.Query().Get("status")
	out := all[:0]
	for _, x := range all {
		if status == "" || x.Status == status {
			out = append(out, x)
		}
	}
	writeJSON(w, http.StatusOK, newest(out))
}

// reportView is a report with its frame.
type reportView struct {
	Report
	Frame []byte `json:"frame,omitempty"` // JPEG, base64 in JSON
}

func (a *admin) report(w http.ResponseWriter, r *http.Request) {
	rep, frame, err := a.svc.Report(r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, reportView{rep, frame})
}

func (a *admin) dismiss(w http.ResponseWriter, r *http.Request) {
	rep, err := a.svc.Dismiss(r.PathValue("id"), a.tokenID)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

type actRequest struct {
	Reason   string `json:"reason"`
	Duration string `json:"duration,omitempty"`
	// Scope is what the ban names: "both" (default: the client key and
	// the address), "client" or "address".
	Scope string `json:"scope,omitempty"`
}

func (a *admin) act(w http.ResponseWriter, r *http.Request) {
	var req actRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
		return
	}
	d, err := parseDuration(req.Duration)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var scope Scope
	switch req.Scope {
	case "", "both":
		scope = ScopeBoth
	case "client":
		scope = ScopeClient
	case "address":
		scope = ScopeAddress
	default:
		writeError(w, http.StatusBadRequest, `scope must be "both", "client" or "address"`)
		return
	}
	rep, ban, notice, err := a.svc.Act(r.PathValue("id"), req.Reason, d, scope, a.tokenID)
	if err != nil {
		a.fail(w, err)
		return
	}
	ended := a.hub.Enforce(ban.identity(), notice)
	writeJSON(w, http.StatusOK, map[string]any{"report": rep, "ban": ban, "sessionsEnded": ended})
}

func (a *admin) bans(w http.ResponseWriter, _ *http.Request) {
	bans, err := a.svc.Bans()
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, newest(bans))
}

type banRequest struct {
	Client   string `json:"client,omitempty"`
	Addr     string `json:"addr,omitempty"` // an address hash, as reports show
	IP       string `json:"ip,omitempty"`   // or a plain address, hashed here
	Reason   string `json:"reason"`
	Duration string `json:"duration,omitempty"`
}

func (a *admin) createBan(w http.ResponseWriter, r *http.Request) {
	var req banRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
		return
	}
	d, err := parseDuration(req.Duration)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	addr := req.Addr
	if req.IP != "" {
		ip, err := netip.ParseAddr(req.IP)
		if err != nil || addr != "" {
			writeError(w, http.StatusBadRequest, "ip must be an IP address (and not given with addr)")
			return
		}
		addr = a.hub.AddrHash(ip)
	}
	ban, notice, err := a.svc.Ban(BanRequest{Client: req.Client, Addr: addr, Reason: req.Reason, Duration: d}, a.tokenID)
	if err != nil {
		a.fail(w, err)
		return
	}
	ended := a.hub.Enforce(ban.identity(), notice)
	writeJSON(w, http.StatusCreated, map[string]any{"ban": ban, "sessionsEnded": ended})
}

func (a *admin) liftBan(w http.ResponseWriter, r *http.Request) {
	ban, err := a.svc.Lift(r.PathValue("id"), a.tokenID)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ban)
}

func (a *admin) pool(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, newest(a.svc.Pool()))
}

func (a *admin) unshadow(w http.ResponseWriter, r *http.Request) {
	if err := a.svc.Unshadow(r.PathValue("client"), a.tokenID); err != nil {
		a.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *admin) audit(w http.ResponseWriter, _ *http.Request) {
	entries, err := a.svc.Audit()
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, newest(entries))
}
