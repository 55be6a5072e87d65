import ArgumentParser

@main
struct TurnRelayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "turn-relay",
        abstract: "A STUN/TURN relay (RFC 8489 / RFC 8656) with an io_uring data plane.",
        discussion: """
            Every option can also be set by the environment variable named in its help \
            (the command line wins). Repeatable options take comma-separated lists in the environment.
            """,
        subcommands: [ServeCommand.self, CredentialCommand.self],
        defaultSubcommand: ServeCommand.self
    )
}
