import RekeyDirectoryAPI
import RekeyNotifierAPI

/// The admin operations, one type per concern: what the JSON admin API, the admin console and the
/// CLI (through the API) do. Each method takes an authenticated ``AdminActor`` and domain values
/// and returns the admin model's values or throws an ``AdminError``; none knows about HTTP.
///
/// Permissions are declared on the routes (`HTTP/AdminRoutes.swift`), and checked again here by
/// every operation that changes something, so a new renderer cannot forget them.
package struct AdminOperations: Sendable {
    package let authentication: AdminAuthentication
    package let users: UserOperations
    package let identities: IdentityOperations
    package let keys: KeyOperations
    package let mail: MailOperations
    package let organizations: OrganizationOperations
    package let audit: AuditOperations
    package let diagnosis: DiagnosisOperations

    package init(flows: Flows) {
        self.authentication = AdminAuthentication(flows: flows)
        self.users = UserOperations(flows: flows)
        self.identities = IdentityOperations(flows: flows)
        self.keys = KeyOperations(flows: flows)
        self.mail = MailOperations(flows: flows)
        self.organizations = OrganizationOperations(flows: flows)
        self.audit = AuditOperations(flows: flows)
        self.diagnosis = DiagnosisOperations(flows: flows)
    }
}

/// One page of a list: how many, and where to continue (empty: from the start).
package struct PageRequest: Sendable {
    package var size: Int
    package var token: String

    package init(size: Int, token: String = "") {
        self.size = size
        self.token = token
    }
}

/// Runs `body` and turns whatever it throws into an ``AdminError``: the one conversion every
/// operation goes through.
func adminCall<T>(_ body: () async throws -> T) async throws(AdminError) -> T {
    do {
        return try await body()
    } catch {
        throw AdminError(error)
    }
}
