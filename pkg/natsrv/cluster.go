package natsrv

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster makes the embedded server one member of a NATS cluster: members
// connect to each other's route listener, share subscriptions, and run
// JetStream as a group, so a stream with three replicas survives the loss of
// one member. Every member needs its own ServerName and StoreDir.
type Cluster struct {
	// Name is the cluster's name, the same on every member.
	Name string
	// Host and Port are this member's route listener (default 127.0.0.1,
	// port 0: a free one). Listening anywhere but loopback needs a Username
	// and Password, as clients need a token.
	Host string
	Port int
	// Routes are the members' route URLs (nats://host:port), this one's
	// included (a member skips itself), as every member's configuration
	// lists them. JetStream needs at least one; members gossip the rest.
	Routes []string
	// Username and Password authenticate routes; every member uses the
	// same pair.
	Username, Password string
}

func (c *Cluster) options() (server.ClusterOpts, []*url.URL, error) {
	if c.Name == "" {
		return server.ClusterOpts{}, nil, errors.New("cluster: give the cluster a name, the same on every member")
	}
	host := c.Host
	if host == "" {
		host = "127.0.0.1"
	}
	if !loopback(host) && (c.Username == "" || c.Password == "") {
		return server.ClusterOpts{}, nil, fmt.Errorf("cluster: refusing to listen for routes on %s without a username and password", host)
	}
	if (c.Username == "") != (c.Password == "") {
		return server.ClusterOpts{}, nil, errors.New("cluster: give both a route username and a password, or neither")
	}
	if c.Port < 0 || c.Port > 65535 {
		return server.ClusterOpts{}, nil, fmt.Errorf("cluster: route port %d is not in [0, 65535]", c.Port)
	}
	port := c.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if len(c.Routes) == 0 {
		return server.ClusterOpts{}, nil, errors.New("cluster: list the members' route URLs (this one's may be among them)")
	}
	var routes []*url.URL
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" {
			return server.ClusterOpts{}, nil, fmt.Errorf("cluster: route %q is not a URL such as nats://10.0.0.2:6222", r)
		}
		if c.Username != "" && u.User == nil {
			u.User = url.UserPassword(c.Username, c.Password)
		}
		routes = append(routes, u)
	}
	return server.ClusterOpts{Name: c.Name, Host: host, Port: port, Username: c.Username, Password: c.Password,
		ConnectRetries: routeRetries}, routes, nil
}

// routeRetries keeps a member trying to reach a route that is not up yet
// (members start in any order) or went away for a while.
const routeRetries = 120

// ClusterURL is this member's route URL for the others' Routes ("" when it
// is not clustered).
func (s *Server) ClusterURL() string {
	addr := s.ns.ClusterAddr()
	if addr == nil {
		return ""
	}
	return "nats://" + net.JoinHostPort(addr.IP.String(), strconv.Itoa(addr.Port))
}

// Clients is how many client connections the server holds now (tests pick
// the busiest member to stop).
func (s *Server) Clients() int { return s.ns.NumClients() }

// Routes is how many route connections to other members the server holds.
func (s *Server) Routes() int { return s.ns.NumRoutes() }
