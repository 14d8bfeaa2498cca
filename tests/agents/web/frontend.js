// @ts-check
// A frontend's calls with the generated client (@veritas/client, generated/ts) and
// Connect-ES's grpc-web transport, as a browser makes them, through Envoy. Prints one JSON
// line per step on stdout; tests/e2e/test_ts_client.py drives it:
//   1. {"step":"signed_in"}: a student and a teacher sign in (AuthService.Login)
//   2. {"step":"unauthenticated"}: a call without a token fails with its Connect code
//   2b. {"step":"invalid"}: a bad Register's field violations, decoded from its details
//   3. {"step":"dashboard"}: the student's dashboard (StudentService.GetStudentDashboard)
//   4. {"step":"watching"}: the teacher's WatchExamAlerts stream is open (its first message)
//   5. {"step":"alert"}: the alert for the anomaly the test ingests after step 4
// Environment: VERITAS_WEB_URL (Envoy), VERITAS_PASSWORD, VERITAS_STUDENT_EMAIL,
// VERITAS_TEACHER_EMAIL, VERITAS_EXAM_ID.
import { toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AuthService, MonitoringService, Role, StudentService } from "@veritas/client";
import { BadRequestSchema } from "@veritas/client/google/rpc/error_details_pb";

/** @param {string} name */
function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

/** @param {object} line */
function report(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** @param {string} token */
const bearer = (token) => ({ headers: { authorization: `Bearer ${token}` } });

const transport = createGrpcWebTransport({ baseUrl: env("VERITAS_WEB_URL") });
const auth = createClient(AuthService, transport);
const students = createClient(StudentService, transport);
const monitoring = createClient(MonitoringService, transport);
const password = env("VERITAS_PASSWORD");

async function main() {
  const student = await auth.login({ email: env("VERITAS_STUDENT_EMAIL"), password });
  const teacher = await auth.login({ email: env("VERITAS_TEACHER_EMAIL"), password });
  const expires = student.tokens?.accessTokenExpireTime;
  report({
    step: "signed_in",
    role: student.user?.role, // a number in TS: Role.STUDENT
    roleIsStudent: student.user?.role === Role.STUDENT,
    teacherRole: Role[teacher.user?.role ?? Role.UNSPECIFIED], // "TEACHER": no prefix in TS
    accessExpires: expires ? timestampDate(expires).toISOString() : null,
    json: toJson(AuthService.method.login.output, student),
  });

  try {
    await auth.getCurrentUser({});
    report({ step: "unauthenticated", code: "none" });
  } catch (error) {
    const failure = ConnectError.from(error);
    report({ step: "unauthenticated", code: Code[failure.code], message: failure.rawMessage });
  }

  try {
    await auth.register({ email: "not an address", password: "short" });
    report({ step: "invalid", code: "none" });
  } catch (error) {
    const failure = ConnectError.from(error);
    const fields = failure
      .findDetails(BadRequestSchema)
      .flatMap((details) => details.fieldViolations.map((violation) => violation.field));
    report({ step: "invalid", code: Code[failure.code], fields });
  }

  const getDashboard = StudentService.method.getStudentDashboard;
  const dashboard = await students.getStudentDashboard(
    {},
    bearer(student.tokens?.accessToken ?? ""),
  );
  report({
    step: "dashboard",
    json: toJson(getDashboard.output, dashboard),
    withDefaults: toJson(getDashboard.output, dashboard, { alwaysEmitImplicit: true }),
  });

  const watchExam = MonitoringService.method.watchExamAlerts;
  const abort = new AbortController();
  const stream = monitoring.watchExamAlerts(
    { examId: env("VERITAS_EXAM_ID") },
    { ...bearer(teacher.tokens?.accessToken ?? ""), signal: abort.signal },
  );
  let watching = false;
  try {
    for await (const message of stream) {
      if (!watching) {
        watching = true;
        report({ step: "watching", first: message.payload.case });
      }
      if (message.payload.case === "alert") {
        const alert = message.payload.value;
        report({
          step: "alert",
          json: toJson(watchExam.output, message),
          withDefaults: toJson(watchExam.output, message, { alwaysEmitImplicit: true }),
          droppedType: typeof message.droppedAlertCount, // int64: bigint in TS
          occurTime: alert.occurTime ? timestampDate(alert.occurTime).toISOString() : null,
        });
        abort.abort();
      }
    }
  } catch (error) {
    if (!abort.signal.aborted) throw error;
  }
}

const deadline = setTimeout(() => {
  process.stderr.write("frontend.js: no alert within 60 s\n");
  process.exit(2);
}, 60_000);
main().then(
  () => clearTimeout(deadline),
  (error) => {
    process.stderr.write(`frontend.js: ${error?.stack ?? error}\n`);
    process.exit(1);
  },
);
