"""The one error tree of lambdad, mirroring AWS Lambda's error codes.

Errors carry data, never HTTP: ``lambdad.api.errors`` renders them to the wire in one table.
A function's own failure (an exception in a handler, a crash, a timeout) is an invocation
*result*, not one of these.

::

    LambdaError
    ├── ServiceException                         (internal; unknown exceptions become this)
    ├── ResourceNotFoundException
    ├── ResourceConflictException
    ├── DurableExecutionAlreadyStartedException
    ├── CallbackTimeoutException                 (a durable callback that ended, or timed out)
    ├── ResourceInUseException                   (an event source mapping mid-transition)
    ├── ResourceNotReadyException
    ├── PreconditionFailedException
    ├── InvalidParameterValueException
    ├── InvalidRequestContentException
    ├── RequestTooLargeException                 (wire code RequestEntityTooLargeException)
    ├── UnsupportedMediaTypeException
    ├── TooManyRequestsException                 (reason, retry_after)
    ├── CodeStorageExceededException
    ├── ServiceQuotaExceededException
    ├── InvalidRuntimeException
    ├── InvalidZipFileException
    ├── UnrecognizedClientException              (an access key lambdad does not know)
    ├── MissingAuthenticationTokenException      (sigv4 mode: a request with no signature)
    ├── InvalidSignatureException                (a wrong signature, or a date out of range)
    ├── IncompleteSignatureException             (an Authorization header that does not parse)
    ├── AccessDeniedException                    (another account's resource, not granted)
    ├── UnknownOperationException
    ├── RecursiveInvocationException             (a recursive loop stopped after 16 hops)
    ├── ProvisionedConcurrencyConfigNotFoundException
    ├── PolicyLengthExceededException            (a resource policy over 20 KB)
    ├── PublicPolicyException
    ├── LimitExceededException                   (EventBridge: too many targets on a rule)
    ├── InvalidParameterException                (CloudWatch Logs' bad-input error)
    ├── ResourceAlreadyExistsException           (CloudWatch Logs: a group or stream exists)
    ├── InvalidParameterCombinationException     (CloudWatch: parameters used together)
    ├── MissingRequiredParameterException        (CloudWatch: a parameter it needs is missing)
    └── InvalidNextToken                         (CloudWatch: a token it did not hand out)
"""

from __future__ import annotations


class LambdaError(Exception):
    """Base of every error lambdad reports to a client; ``code`` is the AWS error code."""

    code = "ServiceException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ServiceException(LambdaError):
    code = "ServiceException"


class ResourceNotFoundException(LambdaError):
    code = "ResourceNotFoundException"


class ResourceConflictException(LambdaError):
    code = "ResourceConflictException"


class DurableExecutionAlreadyStartedException(LambdaError):
    """A durable invoke named an execution that exists with another payload."""

    code = "DurableExecutionAlreadyStartedException"


class CallbackTimeoutException(LambdaError):
    """A durable execution's callback was completed, timed out, or its execution ended."""

    code = "CallbackTimeoutException"


class ResourceInUseException(LambdaError):
    code = "ResourceInUseException"


class ResourceNotReadyException(LambdaError):
    code = "ResourceNotReadyException"


class PreconditionFailedException(LambdaError):
    code = "PreconditionFailedException"


class InvalidParameterValueException(LambdaError):
    code = "InvalidParameterValueException"


class InvalidRequestContentException(LambdaError):
    code = "InvalidRequestContentException"


class RequestTooLargeException(LambdaError):
    """A payload over the limit. AWS puts ``RequestEntityTooLargeException`` on the wire."""

    code = "RequestEntityTooLargeException"


class UnsupportedMediaTypeException(LambdaError):
    code = "UnsupportedMediaTypeException"


class TooManyRequestsException(LambdaError):
    code = "TooManyRequestsException"

    def __init__(self, message: str, *, reason: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


class CodeStorageExceededException(LambdaError):
    code = "CodeStorageExceededException"


class ServiceQuotaExceededException(LambdaError):
    code = "ServiceQuotaExceededException"


class InvalidRuntimeException(LambdaError):
    code = "InvalidRuntimeException"


class InvalidZipFileException(LambdaError):
    code = "InvalidZipFileException"


class UnrecognizedClientException(LambdaError):
    code = "UnrecognizedClientException"


class MissingAuthenticationTokenException(LambdaError):
    code = "MissingAuthenticationTokenException"


class InvalidSignatureException(LambdaError):
    code = "InvalidSignatureException"


class IncompleteSignatureException(LambdaError):
    code = "IncompleteSignatureException"


class AccessDeniedException(LambdaError):
    code = "AccessDeniedException"


class NotAuthorizedOnResource(AccessDeniedException):
    """A resource of another account, named where no resource policy grants the caller. The
    API layer, which knows the operation, words it as AWS does (``for_action``)."""

    def __init__(self, principal_arn: str, resource_arn: str = "") -> None:
        self.principal_arn = principal_arn
        self.resource_arn = resource_arn
        super().__init__(
            f"User: {principal_arn} is not authorized to perform this operation on resource: "
            f"{resource_arn}"
        )

    def _words(self, action: str) -> str:
        return (
            f"User: {self.principal_arn} is not authorized to perform: {action} on resource: "
            f"{self.resource_arn} because no resource-based policy allows the {action} action"
        )

    def for_action(self, action: str) -> AccessDeniedException:
        """The same refusal naming the IAM ``action`` (``lambda:GetFunction``)."""
        return AccessDeniedException(self._words(action))


class UnknownOperationException(LambdaError):
    code = "UnknownOperationException"


class ValidationException(LambdaError):
    """Shape-level validation failures (``1 validation error detected: ...``)."""

    code = "ValidationException"


class RecursiveInvocationException(LambdaError):
    """Lambda stopped an invocation that is part of a recursive loop (see event_config)."""

    code = "RecursiveInvocationException"


class ProvisionedConcurrencyConfigNotFoundException(LambdaError):
    code = "ProvisionedConcurrencyConfigNotFoundException"


class PolicyLengthExceededException(LambdaError):
    code = "PolicyLengthExceededException"


class PublicPolicyException(LambdaError):
    code = "PublicPolicyException"


class LimitExceededException(LambdaError):
    """EventBridge's: a rule's targets (or another quota) would exceed AWS's limit."""

    code = "LimitExceededException"


class InvalidParameterException(LambdaError):
    """CloudWatch Logs' answer to bad input (its model violations included)."""

    code = "InvalidParameterException"


class ResourceAlreadyExistsException(LambdaError):
    """CloudWatch Logs: the log group or stream to create exists."""

    code = "ResourceAlreadyExistsException"


class InvalidParameterCombinationException(LambdaError):
    """CloudWatch: parameters that cannot be used together (query code
    ``InvalidParameterCombination``)."""

    code = "InvalidParameterCombinationException"


class MissingRequiredParameterException(LambdaError):
    """CloudWatch: a parameter it needs is missing (query code ``MissingParameter``)."""

    code = "MissingRequiredParameterException"


class InvalidNextToken(LambdaError):
    """CloudWatch: a pagination token it did not hand out."""

    code = "InvalidNextToken"
