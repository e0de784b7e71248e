"""The uppercase echo service of the socket-programming chapter, over TCP and UDP."""
