#!/usr/bin/env escript
%% Reads the OTP anchor's raw results (results/*.eterm written by
%% shared/anchors/erlang/run.sh) and prints one figure per line, tab-separated:
%%   scenario  n  value  unit
%% Each value is the median over the anchor's runs or cycles, in the same units and
%% scenario names as relup's benches (benches/common/report.rs).
%% Usage: escript otp_figures.escript RESULTS_DIR
-mode(compile).

main([Dir]) ->
    micro(filename:join(Dir, "micro_default.eterm")),
    Plain = filelib:wildcard(filename:join(Dir, "upgrade_default_N*_plain.eterm")),
    lists:foreach(fun upgrade_plain/1, lists:sort(Plain)),
    Instr = filelib:wildcard(filename:join(Dir, "upgrade_default_N*_instr.eterm")),
    lists:foreach(fun upgrade_instr/1, lists:sort(Instr));
main(_) ->
    io:format(standard_error, "usage: otp_figures.escript RESULTS_DIR~n", []),
    halt(64).

out(Scenario, N, Value, Unit) ->
    io:format("~s\t~b\t~.6f\t~s~n", [Scenario, N, float(Value), Unit]).

median(List) ->
    Sorted = lists:sort(List),
    lists:nth(length(Sorted) div 2 + 1, Sorted).

consult(File) ->
    case file:consult(File) of
        {ok, [Term]} -> {ok, Term};
        Other -> io:format(standard_error, "~s: ~p~n", [File, Other]), error
    end.

micro(File) ->
    case consult(File) of
        {ok, #{results := Results}} ->
            Ops = fun(Key, Scenario, Unit) ->
                case lists:keyfind(Key, 1, Results) of
                    {_, Runs} -> out(Scenario, 1, median([maps:get(ops_per_s, R) || R <- Runs]), Unit);
                    false -> ok
                end
            end,
            Ops(call_1c_1s, "call_1x1", "calls/s"),
            Ops(call_2c_2s, "call_2x2", "calls/s"),
            Ops(call_2c_1s, "call_2x1", "calls/s"),
            Ops(cast_1c, "cast_1x1", "casts/s"),
            [begin
                 out("spawn", N, median([maps:get(us_per_spawn, R) || R <- Runs]), "us"),
                 N >= 100000 andalso
                     out("memory", N, median([maps:get(bytes_per_proc_total, R) || R <- Runs]), "bytes")
             end || {{spawn, anchor_echo, N}, Runs} <- Results],
            ok;
        _ -> ok
    end.

cycles(File, Fun) ->
    case consult(File) of
        {ok, #{cycles := Cycles}} ->
            N = n_of(File),
            [Fun(N, Dir, [maps:get(Dir, C) || C <- Cycles]) || Dir <- [up, down]];
        _ -> ok
    end.

n_of(File) ->
    {match, [Digits]} = re:run(filename:basename(File), "_N([0-9]+)_", [{capture, all_but_first, list}]),
    list_to_integer(Digits).

upgrade_plain(File) ->
    cycles(File, fun(N, Dir, Runs) ->
        out("install_" ++ atom_to_list(Dir), N, median([maps:get(install_us, R) || R <- Runs]) / 1000, "ms")
    end).

upgrade_instr(File) ->
    cycles(File, fun(N, Dir, Runs) ->
        Probe = fun(R) ->
            %% The middle worker; at N = 1 there is no worker, only the singleton.
            Probes = maps:get(probes, R),
            case lists:keyfind(w_middle, 1, Probes) of
                {_, #{max_us := Max}} -> Max;
                false ->
                    {_, #{max_us := Max}} = lists:keyfind(ticker, 1, Probes),
                    Max
            end
        end,
        out("pause_" ++ atom_to_list(Dir), N, median([Probe(R) || R <- Runs]) / 1000, "ms")
    end).
