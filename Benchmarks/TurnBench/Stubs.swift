import ArgumentParser
struct Core: ParsableCommand { static let configuration = CommandConfiguration(commandName: "core") }
