import RekeyDirectoryAPI
import RekeyNotifierAPI
import RekeyRPC

/// A permission a role carries. Reading needs a staff user and no permission; changing users and
/// organizations and sending mail needs ``manageUsers``.
package struct Permission: Hashable, Sendable, CustomStringConvertible {
    package let name: String
    /// What the help-desk article calls it.
    package let title: String

    /// "Create and update users and organizations".
    package static let manageUsers = Permission(name: "users.manage", title: "Create and update users and organizations")

    package var description: String { self.name }
}

/// An authenticated staff member acting through the gateway, with where the request came from.
/// Only ``AdminAuthentication`` makes one, after the directory vouched for the key or session.
package struct AdminActor: Sendable {
    package let user: Rekey_Directory_V1_User
    package let permissions: Set<String>
    package let clientAddress: String
    package let requestID: String

    init(user: Rekey_Directory_V1_User, permissions: [String], clientAddress: String, requestID: String) {
        self.user = user
        self.permissions = Set(permissions)
        self.clientAddress = clientAddress
        self.requestID = requestID
    }

    package func has(_ permission: Permission) -> Bool {
        self.permissions.contains(permission.name)
    }

    /// Throws PERMISSION_DENIED naming the permission when the actor lacks it.
    package func require(_ permission: Permission) throws(AdminError) {
        guard self.has(permission) else {
            throw AdminError(.permissionDenied, "permission_denied", "this needs the permission \(permission.name) (\(permission.title))")
        }
    }

    /// Addresses are shown in full only to those who may change them.
    var canSeeAddresses: Bool { self.has(.manageUsers) }

    var directoryActor: Rekey_Directory_V1_Actor { Flows.directoryActor(self.user.id, self.clientAddress) }
    var notifierActor: Rekey_Notifier_V1_Actor { Flows.notifierActor(self.user.id, self.clientAddress) }
    var options: CallOptions { Backends.options(self.requestID) }
}
