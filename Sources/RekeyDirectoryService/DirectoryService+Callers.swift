import RekeyDirectoryAPI
import RekeyRPC

extension DirectoryService {
    /// Who may call what over mutual TLS: the gateway, the methods it uses. No other service calls
    /// the directory; the methods the gateway does not use (roles, GetOrganization,
    /// CheckPermission, the one-shot ImportUsers) are for tools run with `tls = off` or in process.
    package static let callers = CallerPolicy([
        "gateway": [
            Method.CreateUser.descriptor, Method.GetUser.descriptor, Method.UpdateUser.descriptor, Method.SetUserState.descriptor,
            Method.FindUserByEmail.descriptor, Method.SearchUsers.descriptor, Method.ListUsers.descriptor,
            Method.AddEmail.descriptor, Method.RemoveEmail.descriptor, Method.SetPrimaryEmail.descriptor, Method.MarkEmailVerified.descriptor,
            Method.CreateOrganization.descriptor, Method.ListOrganizations.descriptor, Method.UpdateOrganization.descriptor,
            Method.DeleteOrganization.descriptor,
            Method.SetPassword.descriptor, Method.CheckPasswordPolicy.descriptor, Method.VerifyPassword.descriptor,
            Method.CreateApiKey.descriptor, Method.RevokeApiKey.descriptor, Method.AuthenticateApiKey.descriptor,
            Method.CreateSession.descriptor, Method.ValidateSession.descriptor, Method.RevokeSessions.descriptor,
            Method.BeginImport.descriptor, Method.AppendImport.descriptor, Method.CommitImport.descriptor,
            Method.ListAuditRecords.descriptor,
        ],
    ])

    private typealias Method = Rekey_Directory_V1_Directory.Method
}
