package main

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// maxNodeID is the longest STRANGERS_NODE_ID, in bytes (its bounds tag).
const maxNodeID = 64

// checkCluster validates the settings of several instances sharing one
// matchmaker through Redis, and derives the Redis URL, its host (the only
// part of it that is logged) and the node id. bad reports a variable's
// problem, as in validate.
func checkCluster(c config, s *settings, environment map[string]string, bad func(name, value, problem string)) {
	urlVar := "STRANGERS_REDIS_URL"
	raw := c.RedisURL
	if _, ok := environment["STRANGERS_REDIS_URL_FILE"]; ok {
		urlVar = "STRANGERS_REDIS_URL_FILE"
		if _, both := environment["STRANGERS_REDIS_URL"]; both {
			bad("STRANGERS_REDIS_URL", "", "set either it or STRANGERS_REDIS_URL_FILE, not both")
			return
		}
		raw = c.RedisURLFile
		if strings.TrimSpace(raw) == "" {
			bad(urlVar, "", "the file "+environment[urlVar]+" is empty")
			return
		}
	}
	raw = strings.TrimSpace(raw)
	if raw != "" {
		host, problem := parseRedisURL(raw)
		if problem != "" {
			bad(urlVar, "", problem)
			return
		}
		s.redisURL, s.redisHost = raw, host
	}

	id := c.NodeID
	switch {
	case id == "":
	case len(id) > maxNodeID:
		bad("STRANGERS_NODE_ID", id, "must be at most "+strconv.Itoa(maxNodeID)+" bytes")
		return
	case strings.IndexFunc(id, func(r rune) bool { return !nodeIDRune(r) }) >= 0:
		bad("STRANGERS_NODE_ID", id, "may hold only letters, digits, '.', '_' and '-'")
		return
	case s.redisURL == "":
		bad("STRANGERS_NODE_ID", id, "Redis is not on: set STRANGERS_REDIS_URL")
		return
	}
	if s.redisURL == "" {
		return
	}
	if id == "" {
		id = defaultNodeID()
	}
	s.nodeID = id

	if c.TURNEnabled && s.secretRandom {
		bad("STRANGERS_TURN_SECRET", "", "must be set with "+urlVar+": all nodes must share one STRANGERS_TURN_SECRET (or STRANGERS_TURN_SECRET_FILE), and a random one differs on every node")
	}
}

// parseRedisURL checks a Redis URL as go-redis reads it and returns its
// host:port, or the problem in words that never repeat the URL (it may
// hold a password).
func parseRedisURL(raw string) (host, problem string) {
	const form = "redis://[user:password@]host:port[/db] or rediss:// for TLS"
	u, err := url.Parse(raw)
	if err != nil {
		return "", "must be a URL such as " + form
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		if u.Scheme == "" {
			return "", "must be a URL such as " + form
		}
		return "", "must be a redis:// or rediss:// URL, not " + u.Scheme + "://"
	}
	if u.Hostname() == "" {
		return "", "must name the Redis host: " + form
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", "the port must be from 1 to 65535"
		}
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			return "", "the path must be a database number, as in redis://host:6379/0"
		}
	}
	port := u.Port()
	if port == "" {
		port = "6379"
	}
	return net.JoinHostPort(u.Hostname(), port), ""
}

func nodeIDRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// defaultNodeID is the host name (its characters outside the node id's
// set replaced) and a random suffix, so that two instances on one host,
// or one restarted, never share a name.
func defaultNodeID() string {
	var suffix [3]byte
	rand.Read(suffix[:])
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if nodeIDRune(r) {
			return r
		}
		return '-'
	}, host)
	if host == "" {
		host = "node"
	}
	if room := maxNodeID - 1 - 2*len(suffix); len(host) > room {
		host = host[:room]
	}
	return host + "-" + hex.EncodeToString(suffix[:])
}

// recentPartners is how many past partners a session is kept from
// (signaling.Config.RecentPartners, whose default it is); the hub and a
// shared engine must agree on it.
const recentPartners = 3
