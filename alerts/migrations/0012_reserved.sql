-- Number 0012 is a parallel branch's migration; this empty step keeps the numbering whole until that
-- branch's file takes its place (then this file goes).
SELECT 1;
